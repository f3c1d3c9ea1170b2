//! Reaching other hosts' containers: host-gw routes (the `routed` and `bridge`
//! datapaths across hosts) and VXLAN overlay entries (the `vxlan` datapath),
//! programmed per remote node. Used by the node agent and by the lab.
//!
//! VXLAN is done the Flannel way: no learning and no flooding. For every remote
//! node there is a route to its container subnets via its underlay address on
//! the VXLAN device (on-link), a permanent neighbour entry mapping that address
//! to the node's VTEP MAC, and an FDB entry sending that MAC to the node.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_kernel::link::Mac;
use nearhost_kernel::neigh::FdbEntry;
use nearhost_kernel::route::Route;

use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};

/// A remote node: its underlay address and the container subnets behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_ip: IpAddr,
    pub subnets: Vec<IpNet>,
}

/// The VTEP MAC of the node at `node_ip`: derived from the address, so every
/// node computes every other node's MAC without asking (locally administered).
pub fn vtep_mac(node_ip: IpAddr) -> Mac {
    match node_ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [0x02, 0x4e, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            // fold the address into four bytes; collisions need two nodes whose
            // folded addresses match, within one cluster
            let mut f = [0u8; 4];
            for (i, b) in o.iter().enumerate() {
                f[i % 4] ^= b;
            }
            [0x02, 0x4f, f[0], f[1], f[2], f[3]]
        }
    }
}

fn hostgw_route(subnet: &IpNet, via: IpAddr) -> Route {
    let mut r = Route::to(*subnet);
    r.gateway = Some(via);
    r
}

fn vxlan_route(subnet: &IpNet, via: IpAddr, vxlan_index: u32) -> Route {
    let mut r = hostgw_route(subnet, via);
    r.oif = Some(vxlan_index);
    r.onlink = true;
    r
}

/// The peer's subnets of its address family, to add routes for. A default
/// route is never one: it would send all of this host's traffic to that node.
fn routable(peer: &Peer) -> Result<impl Iterator<Item = &IpNet>> {
    if let Some(s) = peer.subnets.iter().find(|s| s.prefix_len() == 0) {
        return Err(DatapathError::InvalidConfig {
            field: format!("subnets of peer {}", peer.node_ip),
            reason: format!("{s} would replace this host's default route"),
        });
    }
    Ok(peer.subnets.iter().filter(|s| s.addr().is_ipv6() == peer.node_ip.is_ipv6()))
}

/// host-gw: routes to the peer's subnets via its underlay address.
pub fn add_hostgw(host: &mut Namespace, peer: &Peer) -> Result<()> {
    for s in routable(peer)? {
        host.nl
            .replace_route(&hostgw_route(s, peer.node_ip))
            .ctx(|| format!("route {s} via {}", peer.node_ip))?;
    }
    if peer.node_ip.is_ipv6() {
        forward_v6_by(host, &peer.subnets);
    }
    Ok(())
}

/// The peer's IPv6 traffic to this node's containers arrives by the interface
/// the routes to it leave by: forwarding goes on there, per interface (see
/// [`crate::host::ensure_forwarding`]). Where it cannot, the routes stay and a
/// warning says why.
fn forward_v6_by(host: &mut Namespace, subnets: &[IpNet]) {
    let routes = match host.nl.routes(true) {
        Ok(r) => r,
        Err(e) => return tracing::warn!("read IPv6 routes: {e}"),
    };
    let mut oifs: Vec<u32> =
        routes.iter().filter(|r| subnets.contains(&r.dst)).filter_map(|r| r.oif).collect();
    oifs.sort_unstable();
    oifs.dedup();
    for index in oifs {
        let Ok(Some(link)) = host.nl.link_by_index(index) else { continue };
        if let Err(e) = crate::host::ensure_forwarding(host, false, Some(&link.name)) {
            tracing::warn!("IPv6 from other nodes will not reach containers: {e}");
        }
    }
}

pub fn remove_hostgw(host: &mut Namespace, peer: &Peer) -> Result<()> {
    for s in peer.subnets.iter().filter(|s| s.addr().is_ipv6() == peer.node_ip.is_ipv6()) {
        host.nl
            .del_route(&hostgw_route(s, peer.node_ip))
            .ctx(|| format!("delete route {s} via {}", peer.node_ip))?;
    }
    Ok(())
}

/// VXLAN: FDB, neighbour and routes for the peer on the VXLAN device.
pub fn add_vxlan(host: &mut Namespace, vxlan_index: u32, peer: &Peer) -> Result<()> {
    let mac = vtep_mac(peer.node_ip);
    let fdb = FdbEntry { index: vxlan_index, mac, dst: peer.node_ip };
    host.nl.add_fdb(&fdb).ctx(|| format!("fdb entry for VTEP {}", peer.node_ip))?;
    host.nl
        .set_permanent_neighbour(vxlan_index, peer.node_ip, mac)
        .ctx(|| format!("neighbour entry for VTEP {}", peer.node_ip))?;
    for s in routable(peer)? {
        host.nl
            .replace_route(&vxlan_route(s, peer.node_ip, vxlan_index))
            .ctx(|| format!("route {s} over VXLAN to {}", peer.node_ip))?;
    }
    Ok(())
}

pub fn remove_vxlan(host: &mut Namespace, vxlan_index: u32, peer: &Peer) -> Result<()> {
    for s in peer.subnets.iter().filter(|s| s.addr().is_ipv6() == peer.node_ip.is_ipv6()) {
        host.nl
            .del_route(&vxlan_route(s, peer.node_ip, vxlan_index))
            .ctx(|| format!("delete route {s} over VXLAN"))?;
    }
    host.nl
        .del_neighbour(vxlan_index, peer.node_ip)
        .ctx(|| format!("delete neighbour {}", peer.node_ip))?;
    let fdb = FdbEntry { index: vxlan_index, mac: vtep_mac(peer.node_ip), dst: peer.node_ip };
    host.nl.del_fdb(&fdb).ctx(|| format!("delete fdb entry for {}", peer.node_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_local_unicast_and_distinct() {
        let a = vtep_mac("198.18.0.11".parse().unwrap());
        let b = vtep_mac("198.18.0.12".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a, [0x02, 0x4e, 198, 18, 0, 11]);
        let c = vtep_mac("2001:2::11".parse().unwrap());
        assert_eq!(c[0] & 0x03, 0x02);
    }

    #[test]
    fn a_default_route_is_never_a_peer_subnet() {
        let peer = |s: &str| Peer {
            node_ip: "198.18.0.12".parse().unwrap(),
            subnets: vec![s.parse().unwrap()],
        };
        assert_eq!(routable(&peer("198.19.0.0/26")).unwrap().count(), 1);
        assert_eq!(routable(&peer("2001:2::/122")).unwrap().count(), 0, "other family");
        for s in ["0.0.0.0/0", "::/0"] {
            let e = routable(&peer(s)).err().unwrap().to_string();
            assert!(e.contains("default route"), "{e}");
        }
    }

    #[test]
    fn vxlan_routes_are_onlink_via_the_node() {
        let r = vxlan_route(&"198.19.22.0/24".parse().unwrap(), "198.18.0.12".parse().unwrap(), 7);
        assert!(r.onlink);
        assert_eq!(r.oif, Some(7));
        assert_eq!(r.dst, "198.19.22.0/24".parse::<IpNet>().unwrap());
    }
}
