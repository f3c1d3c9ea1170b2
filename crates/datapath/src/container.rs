//! The container side every driver shares: rename the new link from its temporary
//! name, set MAC, bring it up, add addresses (no DAD), neighbours and routes,
//! announce the addresses; and the matching CHECK and DEL steps.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_kernel::link::{format_mac, Link, Mac};
use nearhost_kernel::route::Route;
use nearhost_kernel::{announce, netns, sysctl};

use crate::context::{AddRequest, CheckRequest, Namespace};
use crate::error::{DatapathError, KernelContext, Result};

/// How the new container interface is to be finished.
pub struct Setup<'a> {
    /// The link's index in the sandbox (it still has its temporary name).
    pub temp_index: u32,
    pub ifname: &'a str,
    pub mac: Option<Mac>,
    pub addresses: Vec<IpNet>,
    /// Routes via this interface (`oif` is filled in here).
    pub routes: Vec<Route>,
    /// Permanent neighbour entries (e.g. the routed datapath's link-local gateway).
    pub neighbours: Vec<(IpAddr, Mac)>,
}

impl<'a> Setup<'a> {
    /// The usual finish: the request's addresses and the given routes, no
    /// MAC change (set when the link was created), no pinned neighbours.
    pub fn standard(temp_index: u32, req: &AddRequest<'a>, routes: Vec<Route>) -> Self {
        Setup {
            temp_index,
            ifname: req.ifname,
            mac: None,
            addresses: req.addresses.iter().map(|a| a.address).collect(),
            routes,
            neighbours: Vec::new(),
        }
    }
}

/// ADD must not take over an interface the container already has.
pub fn ensure_ifname_free(sb: &mut Namespace, ifname: &str) -> Result<()> {
    match sb.nl.link_by_name(ifname).ctx(|| format!("look up {ifname} in the container"))? {
        Some(_) => Err(DatapathError::Conflict(format!(
            "interface {ifname:?} already exists in container namespace {}; choose another CNI_IFNAME",
            sb.ns.path().display()
        ))),
        None => Ok(()),
    }
}

/// Finishes the container interface; returns it as the kernel now reports it.
pub fn finish(sb: &mut Namespace, s: &Setup<'_>) -> Result<Link> {
    let idx = s.temp_index;
    let name = s.ifname;
    sb.nl.rename_link(idx, name).map_err(|e| {
        if e.is_exists() {
            DatapathError::Conflict(format!(
                "interface {name:?} already exists in the container namespace"
            ))
        } else {
            DatapathError::Kernel {
                context: format!("rename the new interface to {name}"),
                source: e,
            }
        }
    })?;
    if let Some(mac) = s.mac {
        sb.nl.set_mac(idx, mac).ctx(|| format!("set MAC {} on {name}", format_mac(&mac)))?;
    }
    for a in &s.addresses {
        sb.nl
            .add_address(idx, a.addr(), a.prefix_len(), true)
            .ctx(|| format!("add {a} to {name}"))?;
    }
    if s.addresses.iter().any(|a| a.addr().is_ipv4()) {
        // The kernel announces IPv4 addresses itself when the link comes up
        // (arp_notify). Sending our own ARP would need an AF_PACKET socket, whose
        // close waits for an RCU grace period: ~10 ms on every ADD.
        netns::run_in(&sb.ns, || sysctl::write(&["net", "ipv4", "conf", name, "arp_notify"], "1"))
            .and_then(|r| r)
            .ctx(|| format!("enable arp_notify on {name}"))?;
    }
    sb.nl.set_link_up(idx, true).map_err(|e| {
        if e.errno() == Some(libc::EADDRINUSE) {
            // macvlan refuses to come up with a MAC a sibling on the master has.
            DatapathError::Conflict(format!(
                "{name}: its MAC address is already used by another interface on the master"
            ))
        } else {
            DatapathError::Kernel { context: format!("bring {name} up"), source: e }
        }
    })?;
    for (ip, mac) in &s.neighbours {
        sb.nl
            .set_permanent_neighbour(idx, *ip, *mac)
            .ctx(|| format!("add neighbour {ip} on {name}"))?;
    }
    for r in &s.routes {
        let mut r = r.clone();
        r.oif = Some(idx);
        sb.nl.add_route(&r).ctx(|| format!("add route {} on {name}", route_text(&r)))?;
    }
    let link = sb.nl.link_by_index(idx).ctx(|| format!("read back {name}"))?.ok_or_else(|| {
        DatapathError::Conflict(format!(
            "{name} vanished from the container namespace during setup"
        ))
    })?;
    announce_addresses(sb, &link, &s.addresses);
    Ok(link)
}

/// Unsolicited neighbour advertisements for the IPv6 addresses (no-DAD addresses
/// get none from the kernel). Best effort: a link without carrier cannot send,
/// and that must not fail the ADD.
fn announce_addresses(sb: &Namespace, link: &Link, addrs: &[IpNet]) {
    let Some(mac) = link.mac else { return };
    let index = link.index;
    let addrs: Vec<IpNet> = addrs.iter().filter(|a| a.addr().is_ipv6()).copied().collect();
    if addrs.is_empty() {
        return;
    }
    let sent = netns::run_in(&sb.ns, move || {
        for a in addrs {
            let r = match a.addr() {
                IpAddr::V6(v6) => announce::unsolicited_na(index, mac, v6),
                IpAddr::V4(_) => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!("announce {a}: {e}");
            }
        }
    });
    if let Err(e) = sent {
        tracing::warn!("announce addresses: {e}");
    }
}

/// The routes of the IPAM config, each via its own `gw` or else the gateway of
/// the address of the same family.
pub fn ipam_routes(req: &AddRequest<'_>) -> Vec<Route> {
    req.routes
        .iter()
        .map(|spec| {
            let v6 = spec.dst.addr().is_ipv6();
            let gw = spec.gw.or_else(|| {
                req.addresses
                    .iter()
                    .find(|a| a.address.addr().is_ipv6() == v6)
                    .and_then(|a| a.gateway)
            });
            let mut r = Route::to(spec.dst);
            r.gateway = gw;
            r
        })
        .collect()
}

fn route_text(r: &Route) -> String {
    match r.gateway {
        Some(gw) => format!("{} via {gw}", r.dst),
        None => r.dst.to_string(),
    }
}

/// DEL's container side: delete the interface if the namespace is still there
/// (links of a namespace die with it).
pub fn delete_if_present(sb: Option<&mut Namespace>, ifname: &str) -> Result<()> {
    match sb {
        Some(sb) => delete_iface(sb, ifname),
        None => Ok(()),
    }
}

/// Deletes the container interface; a missing interface is success.
pub fn delete_iface(sb: &mut Namespace, ifname: &str) -> Result<()> {
    let Some(link) = sb.nl.link_by_name(ifname).ctx(|| format!("look up {ifname}"))? else {
        return Ok(());
    };
    match sb.nl.delete_link(link.index) {
        Err(e) if !e.is_not_found() => {
            Err(DatapathError::Kernel { context: format!("delete {ifname}"), source: e })
        }
        _ => Ok(()),
    }
}

/// CHECK of the container side against the previous result: the interface, its
/// MAC, every address and every route. The error lists every difference.
pub fn check_sandbox(sb: &mut Namespace, req: &CheckRequest<'_>) -> Result<Link> {
    let name = req.ifname;
    let link = sb.nl.link_by_name(name).ctx(|| format!("look up {name}"))?.ok_or_else(|| {
        DatapathError::CheckFailed(format!(
            "interface {name} is missing from container namespace {}",
            sb.ns.path().display()
        ))
    })?;
    let mut problems = Vec::new();
    let idx = req.prev.sandbox_iface(name);
    if idx.is_none() {
        problems.push(format!("prevResult lists no interface {name} in the sandbox"));
    }
    if let Some(want) = idx.and_then(|i| req.prev.interfaces[i].mac.clone()) {
        let have = link.mac.as_ref().map(format_mac).unwrap_or_default();
        if !want.eq_ignore_ascii_case(&have) {
            problems.push(format!("{name} has MAC {have}, prevResult says {want}"));
        }
    }
    if !link.up {
        problems.push(format!("{name} is down"));
    }
    let have_addrs =
        sb.nl.addresses(Some(link.index)).ctx(|| format!("list addresses of {name}"))?;
    for ip in req.prev.ips.iter().filter(|ip| ip.interface.is_none() || ip.interface == idx) {
        let found = have_addrs
            .iter()
            .any(|a| a.ip == ip.address.addr() && a.prefix == ip.address.prefix_len());
        if !found {
            problems.push(format!("{name} lacks address {}", ip.address));
        }
    }
    let mut have_routes = sb.nl.routes(false).ctx(|| "list routes".into())?;
    have_routes.extend(sb.nl.routes(true).ctx(|| "list routes".into())?);
    for want in &req.prev.routes {
        let found = have_routes
            .iter()
            .any(|r| r.dst == want.dst.trunc() && (want.gw.is_none() || r.gateway == want.gw));
        if !found {
            let via = want.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            problems.push(format!("route {}{via} is missing", want.dst));
        }
    }
    if problems.is_empty() {
        Ok(link)
    } else {
        Err(DatapathError::CheckFailed(problems.join("; ")))
    }
}
