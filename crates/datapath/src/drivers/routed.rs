//! routed: a veth per container, no bridge. The host routes each container's /32
//! (/128) to its veth; the container reaches everything through a link-local
//! next hop whose MAC is pinned, so it never ARPs for a gateway. Across hosts the
//! same routes are joined by plain host-gw routes (see [`crate::peers`]).
//!
//! With `"bpf": true` the host's BPF host routing takes pod-to-pod packets
//! around the host stack (see [`crate::host_routing`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nearhost_kernel::route::Route;
use serde_json::Value;

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::host_routing::{self, BpfConfig};
use crate::{host, veth};

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
        let v4 = req.addresses.iter().any(|a| a.address.addr().is_ipv4());
        let v6 = req.addresses.iter().any(|a| a.address.addr().is_ipv6());
        let pair = veth::create(host, sb, "nhr", self.mtu, req.mac.or(self.mac))?;
        // Containers' packets enter the host by the veth's host end.
        host::ensure_forwarding(host, v4, v6.then_some(pair.host.name.as_str()))?;
        let host_mac = pair.host.mac.ok_or_else(|| {
            DatapathError::Conflict(format!("veth {} has no MAC", pair.host.name))
        })?;
        host.nl
            .set_link_up(pair.host.index, true)
            .ctx(|| format!("bring {} up", pair.host.name))?;
        let routes = container_routes(req, v4, v6);
        let addresses: Vec<IpNet> = req.addresses.iter().map(|a| host_prefix(&a.address)).collect();
        let mut neighbours = Vec::new();
        if v4 {
            neighbours.push((gateway(false), host_mac));
        }
        if v6 {
            neighbours.push((gateway(true), host_mac));
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
        let ctr_mac = link
            .mac
            .ok_or_else(|| DatapathError::Conflict(format!("{} has no MAC", req.ifname)))?;
        // Pin the container's MAC on the host side too: no ARP/NDP either way.
        veth::route_to_container(host, &pair.host, addresses.iter().map(|a| a.addr()), ctr_mac)?;
        if let Some(bpf) = &self.bpf {
            // The pod's IPAM subnets are pod blocks too (its own /32s are not).
            let subnets: Vec<IpNet> = req.addresses.iter().map(|a| a.address).collect();
            host_routing::attach_pod(host, bpf, &pair.host, ctr_mac, &addresses, &subnets)?;
        }
        pair.guard.disarm();
        let addrs: Vec<_> =
            addresses.iter().map(|a| (*a, Some(gateway(a.addr().is_ipv6())))).collect();
        Ok(Outcome::attached(
            vec![Iface::of(&pair.host, false)],
            Iface::of(&link, true),
            &addrs,
            &routes,
        ))
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
        let link = container::check_sandbox(sb, req)?;
        let host_end = veth::host_end(host, &link)?.ok_or_else(|| {
            DatapathError::CheckFailed(format!(
                "the host end of {}'s veth pair is missing",
                req.ifname
            ))
        })?;
        veth::check_host_routes(host, &host_end, req)?;
        if let Some(bpf) = &self.bpf {
            let ips: Vec<IpAddr> = req.prev.ips.iter().map(|i| i.address.addr()).collect();
            host_routing::check_pod(host, bpf, &host_end, &ips)?;
        }
        Ok(())
    }
}

/// Default routes (and any IPAM routes) via the link-local next hop, on-link.
fn container_routes(req: &AddRequest<'_>, v4: bool, v6: bool) -> Vec<Route> {
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
            r.gateway = Some(gateway(is_v6));
            r.onlink = true;
            routes.push(r);
        }
    }
    routes
}
