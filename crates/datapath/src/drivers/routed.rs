//! routed: a veth per container, no bridge. The host routes each container's /32
//! (/128) to its veth; the container reaches everything through a link-local
//! next hop whose MAC is pinned, so it never ARPs for a gateway. Across hosts the
//! same routes are joined by plain host-gw routes (see [`crate::peers`]).
//!
//! With `"bpf": true` the host's BPF host routing takes pod-to-pod packets
//! around the host stack (see [`crate::host_routing`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nearhost_kernel::link::Link;
use nearhost_kernel::route::Route;
use serde_json::Value;

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::host;
use crate::host_routing::{self, BpfConfig};
use crate::veth::{self, PairKind, Veth};

pub const REGISTRATION: Registration = Registration { name: "routed", build };

/// The container's next hop: link-local, answered by the pinned host-veth MAC.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

struct Routed {
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
    bpf: Option<BpfConfig>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    Ok(Box::new(Routed {
        mtu: f.mtu("mtu")?,
        mac: f.str("mac")?.map(|m| fields::parse_unicast_mac("mac", m)).transpose()?,
        bpf: BpfConfig::parse(conf)?,
    }))
}

pub(crate) fn gateway(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(GATEWAY_V6)
    } else {
        IpAddr::V4(GATEWAY_V4)
    }
}

/// The container's address as a host route: /32 or /128.
fn host_prefix(a: &IpNet) -> IpNet {
    IpNet::new(a.addr(), if a.addr().is_ipv6() { 128 } else { 32 }).expect("valid prefix")
}

impl Datapath for Routed {
    fn preflight(&self, _host: &mut Namespace) -> Result<()> {
        match &self.bpf {
            Some(_) => host_routing::preflight(),
            None => Ok(()),
        }
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let pair = veth::create(host, sb, "nhr", self.mtu, req.mac.or(self.mac))?;
        let routed = attach_pair(host, sb, req, &pair)?;
        if let Some(bpf) = &self.bpf {
            let ctr_mac = routed
                .link
                .mac
                .ok_or_else(|| DatapathError::Conflict(format!("{} has no MAC", req.ifname)))?;
            // The pod's IPAM subnets are pod blocks too (its own /32s are not).
            let subnets: Vec<IpNet> = req.addresses.iter().map(|a| a.address).collect();
            host_routing::attach_pod(host, bpf, &pair.host, ctr_mac, &routed.addresses, &subnets)?;
        }
        pair.guard.disarm();
        Ok(routed.outcome(&pair.host))
    }

    // DEL: deleting the container end deletes the host end, and with it the
    // host routes and neighbour entries that pointed at it; with "bpf" the
    // pod then leaves the BPF maps (found by its veth, or as a stale entry
    // when the namespace is already gone).
    fn del(
        &self, host: &mut Namespace, sandbox: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        let Some(bpf) = &self.bpf else {
            return container::delete_if_present(sandbox, req.ifname);
        };
        let mut host_end = None;
        if let Some(sb) = sandbox {
            if let Some(link) =
                sb.nl.link_by_name(req.ifname).ctx(|| format!("look up {}", req.ifname))?
            {
                host_end = veth::host_end(host, &link)?.map(|l| l.index);
            }
            container::delete_iface(sb, req.ifname)?;
        }
        host_routing::detach_pod(host, bpf, host_end)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        let host_end = check_pair(host, sb, req)?;
        if let Some(bpf) = &self.bpf {
            let ips: Vec<IpAddr> = req.prev.ips.iter().map(|i| i.address.addr()).collect();
            host_routing::check_pod(host, bpf, &host_end, &ips)?;
        }
        Ok(())
    }
}

/// A container on a pair (veth or netkit) once ADD has finished it.
pub(crate) struct RoutedPair {
    pub link: Link,
    /// The container's addresses as host routes (/32, /128).
    pub addresses: Vec<IpNet>,
    pub routes: Vec<Route>,
    /// Whether the container reaches the host through the link-local next
    /// hop (a veth) or straight out of its device (netkit in L3 mode).
    via_gateway: bool,
}

impl RoutedPair {
    /// ADD's result: the host end first, then the container end.
    pub(crate) fn outcome(&self, host_end: &Link) -> Outcome {
        let addrs: Vec<_> = self
            .addresses
            .iter()
            .map(|a| (*a, self.via_gateway.then(|| gateway(a.addr().is_ipv6()))))
            .collect();
        Outcome::attached(
            vec![Iface::of(host_end, false)],
            Iface::of(&self.link, true),
            &addrs,
            &self.routes,
        )
    }
}

/// What `routed` and `netkit` do once their pair exists: forwarding on, the
/// host end up, the container end finished with its /32 (/128) addresses
/// and routes, and host routes to it. On a veth (the host end has a MAC) the
/// container's next hop is the link-local gateway pinned to the host end's
/// MAC, and the container's MAC is pinned on the host: no ARP/NDP either way.
/// netkit in L3 mode has no link layer: the routes go straight out of the
/// device.
pub(crate) fn attach_pair(
    host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>, pair: &Veth,
) -> Result<RoutedPair> {
    let v4 = req.addresses.iter().any(|a| a.address.addr().is_ipv4());
    let v6 = req.addresses.iter().any(|a| a.address.addr().is_ipv6());
    // Containers' packets enter the host by the pair's host end.
    host::ensure_forwarding(host, v4, v6.then_some(pair.host.name.as_str()))?;
    host.nl.set_link_up(pair.host.index, true).ctx(|| format!("bring {} up", pair.host.name))?;
    let via_gateway = pair.kind == PairKind::Veth;
    let routes = container_routes(req, v4, v6, via_gateway);
    let addresses: Vec<IpNet> = req.addresses.iter().map(|a| host_prefix(&a.address)).collect();
    let mut neighbours = Vec::new();
    if via_gateway {
        let host_mac = pair.host.mac.ok_or_else(|| {
            DatapathError::Conflict(format!("veth {} has no MAC", pair.host.name))
        })?;
        for (present, is_v6) in [(v4, false), (v6, true)] {
            if present {
                neighbours.push((gateway(is_v6), host_mac));
            }
        }
    }
    let setup = Setup {
        temp_index: pair.sandbox_index,
        ifname: req.ifname,
        mac: None,
        addresses: addresses.clone(),
        routes: routes.clone(),
        neighbours,
    };
    let link = container::finish(sb, &setup)?;
    let ctr_mac = match via_gateway {
        true => Some(
            link.mac
                .ok_or_else(|| DatapathError::Conflict(format!("{} has no MAC", req.ifname)))?,
        ),
        false => None,
    };
    veth::route_to_container(host, &pair.host, addresses.iter().map(|a| a.addr()), ctr_mac)?;
    Ok(RoutedPair { link, addresses, routes, via_gateway })
}

/// CHECK of [`attach_pair`]: the container end, its pair's host end and the
/// host routes through it. Returns the host end.
pub(crate) fn check_pair(
    host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
) -> Result<Link> {
    let link = container::check_sandbox(sb, req)?;
    let host_end = veth::host_end(host, &link)?.ok_or_else(|| {
        DatapathError::CheckFailed(format!("the host end of {}'s pair is missing", req.ifname))
    })?;
    veth::check_host_routes(host, &host_end, req)?;
    Ok(host_end)
}

/// Default routes (and any IPAM routes): via the link-local next hop, on-link
/// (`via_gateway`, a veth), or straight out of the device (netkit in L3 mode,
/// which has no neighbours).
fn container_routes(req: &AddRequest<'_>, v4: bool, v6: bool, via_gateway: bool) -> Vec<Route> {
    let mut routes = Vec::new();
    for (present, is_v6) in [(v4, false), (v6, true)] {
        if !present {
            continue;
        }
        let mut dsts = vec![Route::default_of(is_v6).dst];
        dsts.extend(
            req.routes
                .iter()
                .filter(|s| s.dst.addr().is_ipv6() == is_v6 && s.dst.prefix_len() > 0)
                .map(|s| s.dst),
        );
        for dst in dsts {
            let mut r = Route::to(dst);
            if via_gateway {
                r.gateway = Some(gateway(is_v6));
                r.onlink = true;
            } else {
                r.scope_link = true;
            }
            routes.push(r);
        }
    }
    routes
}
