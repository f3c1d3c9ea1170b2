//! `hostReach`: host and Service reach for the direct datapaths (macvlan,
//! ipvlan, sriov, sriov-bond, hostdev). Their traffic never passes the host's
//! stack, so the host cannot reach its own containers (a macvlan parent never
//! hears its children) and Services — kube-proxy's DNAT rules in the host —
//! never apply to them. This adds a second, small link: a veth pair between
//! the container (`hr-IFNAME`) and the host (`nhhXXXXXX`), carrying only
//!
//! - in the container: routes to the host's own addresses (as they are at
//!   ADD), the listed `serviceCIDRs` and `hostCIDRs`, via the link-local next
//!   hop 169.254.1.1 / fe80::1 whose MAC is pinned, with the container's own
//!   address as source;
//! - in the host: a /32 (/128) route to each container address through the
//!   veth, its MAC pinned too;
//!
//! and everything else stays on the direct interface. What makes this fragile
//! elsewhere, and how it is handled here:
//!
//! - asymmetric paths and reverse-path filtering: a reply can come back on the
//!   other link (a NodePort's answer arrives on the direct interface). The
//!   container's two interfaces get `rp_filter=2` (loose), per interface, in
//!   the container's namespace; the host's effective setting is untouched
//!   (traffic from the veth comes from the address the host routes to it);
//! - a Service's reply path: a DNATed connection from or to a hostReach veth
//!   is masqueraded to the host's address (one static rule in table
//!   `inet nearhost`), so the backend answers the host, which undoes both
//!   translations, instead of answering the container's address directly over
//!   L2, which the container would drop as an unknown connection;
//! - neighbour entries for an address reachable two ways: none are learnt on
//!   the veth (both ends pinned), and only /32 (/128) routes go through it, so
//!   the container's neighbours on its direct link are never replaced;
//! - MTU: the veth takes the default (1500); only host and Service traffic
//!   uses it;
//! - forwarding: on the veth's host end only (`net.ipv4.conf.nhh….forwarding`,
//!   IPv6 as `crate::host::ensure_forwarding` does it), never `ip_forward`;
//!   a Service reply that arrives by the uplink needs forwarding there, which
//!   a Kubernetes node has (kube-proxy requires `ip_forward=1`);
//! - IPv6: the same with fe80::1.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_kernel::link::Link;
use nearhost_kernel::netns;
use nearhost_kernel::route::Route;
use nearhost_kernel::sysctl;
use serde_json::Value;

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::Datapath;
use crate::drivers::routed::gateway;
use crate::error::{DatapathError, KernelContext, Result};
use crate::{host, nat, veth};

/// The datapaths whose traffic bypasses the host's stack.
pub const DIRECT: &[&str] = &["macvlan", "ipvlan", "sriov", "sriov-bond", "hostdev"];

/// The host ends' name prefix (the masquerade rule matches `nhh*`).
pub const HOST_PREFIX: &str = "nhh";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReach {
    service_cidrs: Vec<IpNet>,
    host_cidrs: Vec<IpNet>,
}

fn cidrs(field: &str, v: Option<&Value>) -> Result<Vec<IpNet>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(DatapathError::config(field, format!("expected a list of CIDRs, got {v}")))
        }
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let text = item.as_str().ok_or_else(|| {
            DatapathError::config(&f, format!("expected a CIDR string, got {item}"))
        })?;
        let net: IpNet = text
            .parse()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| DatapathError::config(&f, format!("{text:?} is not a CIDR")))?;
        if net.prefix_len() == 0 {
            return Err(DatapathError::config(
                &f,
                format!("{text} would send all the container's traffic through the host; the direct interface carries everything not listed"),
            ));
        }
        out.push(net.trunc());
    }
    Ok(out)
}

impl HostReach {
    /// `"hostReach"` of a config: `None` when absent; `{}` alone gives host
    /// reach without Services.
    pub fn parse(conf: &Value) -> Result<Option<HostReach>> {
        let obj = match conf.get("hostReach") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(DatapathError::config(
                    "hostReach",
                    format!(
                    "expected an object (e.g. {{\"serviceCIDRs\": [\"10.96.0.0/12\"]}}), got {v}"
                ),
                ))
            }
        };
        if let Some(k) = obj.keys().find(|k| !["serviceCIDRs", "hostCIDRs"].contains(&k.as_str())) {
            return Err(DatapathError::config(
                format!("hostReach.{k}"),
                "unknown option (known: serviceCIDRs, hostCIDRs)",
            ));
        }
        Ok(Some(HostReach {
            service_cidrs: cidrs("hostReach.serviceCIDRs", obj.get("serviceCIDRs"))?,
            host_cidrs: cidrs("hostReach.hostCIDRs", obj.get("hostCIDRs"))?,
        }))
    }
}

/// The container-side name of the link for `ifname`.
pub fn link_name(ifname: &str) -> String {
    let mut n = format!("hr-{ifname}");
    n.truncate(15);
    n
}

/// A direct datapath with the host link added.
pub struct WithHostReach {
    pub inner: Box<dyn Datapath>,
    pub reach: HostReach,
}

impl WithHostReach {
    /// Where the container's traffic to the host goes: the host's own
    /// addresses now, the listed CIDRs; only families the container has.
    /// A destination that covers one of the container's own addresses would
    /// take its pod↔pod traffic off the direct path: refused.
    fn destinations(&self, host: &mut Namespace, req: &AddRequest<'_>) -> Result<Vec<IpNet>> {
        let mine: Vec<IpNet> = req.addresses.iter().map(|a| a.address).collect();
        for (field, list) in
            [("serviceCIDRs", &self.reach.service_cidrs), ("hostCIDRs", &self.reach.host_cidrs)]
        {
            for (i, net) in list.iter().enumerate() {
                if let Some(a) = mine.iter().find(|a| net.contains(&a.addr())) {
                    return Err(DatapathError::config(
                        format!("hostReach.{field}[{i}]"),
                        format!(
                            "{net} contains the container's address {}: its traffic to the other containers would leave the direct interface",
                            a.addr()
                        ),
                    ));
                }
            }
        }
        let mut dsts: Vec<IpNet> = host
            .nl
            .addresses(None)
            .ctx(|| "list the host's addresses".into())?
            .into_iter()
            .filter(|a| !a.scope_link && !a.ip.is_loopback())
            .filter(|a| !matches!(a.ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .map(|a| IpNet::from(a.ip))
            .collect();
        dsts.extend(self.reach.service_cidrs.iter().chain(&self.reach.host_cidrs).copied());
        dsts.retain(|d| mine.iter().any(|a| a.addr().is_ipv6() == d.addr().is_ipv6()));
        dsts.retain(|d| !mine.iter().any(|a| a.addr() == d.addr()));
        dsts.sort();
        dsts.dedup();
        Ok(dsts)
    }

    /// The veth pair exists (container end under its temporary name), the
    /// direct interface holds the container's addresses: name it, route, pin,
    /// loosen reverse-path filtering, and make the host side.
    fn finish(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>, pair: &veth::Veth,
        dsts: &[IpNet],
    ) -> Result<(Link, Vec<Route>)> {
        let host_mac = pair.host.mac.ok_or_else(|| {
            DatapathError::Conflict(format!("veth {} has no MAC", pair.host.name))
        })?;
        let src =
            |v6: bool| req.addresses.iter().map(|a| a.address.addr()).find(|a| a.is_ipv6() == v6);
        let routes: Vec<Route> = dsts
            .iter()
            .map(|d| {
                let mut r = Route::to(*d);
                r.gateway = Some(gateway(d.addr().is_ipv6()));
                r.onlink = true;
                r.src = src(d.addr().is_ipv6());
                r
            })
            .collect();
        let mut neighbours = Vec::new();
        for v6 in [false, true] {
            if src(v6).is_some() {
                neighbours.push((gateway(v6), host_mac));
            }
        }
        let name = link_name(req.ifname);
        let setup = Setup {
            temp_index: pair.sandbox_index,
            ifname: &name,
            mac: None,
            addresses: Vec::new(),
            routes: routes.clone(),
            neighbours,
        };
        let link = container::finish(sb, &setup)?;
        let ctr_mac =
            link.mac.ok_or_else(|| DatapathError::Conflict(format!("{name} has no MAC")))?;
        // Loose reverse-path filtering on both container interfaces: a reply
        // may arrive on the link its source is not routed by.
        netns::run_in(&sb.ns, || -> Result<()> {
            for ifname in [req.ifname, name.as_str()] {
                let key = ["net", "ipv4", "conf", ifname, "rp_filter"];
                if sysctl::path(&key).exists() {
                    sysctl::ensure(&key, "2").ctx(|| format!("set loose rp_filter on {ifname}"))?;
                }
            }
            Ok(())
        })
        .ctx(|| "enter the container namespace".into())??;
        veth::route_to_container(
            host,
            &pair.host,
            req.addresses.iter().map(|a| a.address.addr()),
            Some(ctr_mac),
        )?;
        Ok((link, routes))
    }
}

impl Datapath for WithHostReach {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        self.inner.preflight(host)
    }

    fn sandbox_names(&self, ifname: &str) -> Vec<String> {
        let mut names = self.inner.sandbox_names(ifname);
        names.push(link_name(ifname));
        names
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let dsts = self.destinations(host, req)?;
        let v4 = req.addresses.iter().any(|a| a.address.addr().is_ipv4());
        let v6 = req.addresses.iter().any(|a| a.address.addr().is_ipv6());
        // The link first (its guard removes it on any failure below), then the
        // direct interface, then the routes that need its addresses.
        let pair = veth::create(host, sb, HOST_PREFIX, None, None)?;
        // Forwarding for what enters by the host link, on that link only:
        // never ip_forward or another setting of the whole host.
        if v4 {
            let key = ["net", "ipv4", "conf", pair.host.name.as_str(), "forwarding"];
            netns::run_in(&host.ns, || sysctl::ensure(&key, "1"))
                .ctx(|| "enter the host namespace".into())?
                .ctx(|| format!("enable forwarding on {}", pair.host.name))?;
        }
        if v6 {
            host::ensure_forwarding(host, false, Some(pair.host.name.as_str()))?;
        }
        host.nl
            .set_link_up(pair.host.index, true)
            .ctx(|| format!("bring {} up", pair.host.name))?;
        nat::ensure_table(host)?;
        let mut out = self.inner.add(host, sb, req)?;
        match self.finish(host, sb, req, &pair, &dsts) {
            Ok((link, routes)) => {
                pair.guard.disarm();
                out.interfaces.push(Iface::of(&pair.host, false));
                out.interfaces.push(Iface::of(&link, true));
                out.routes.extend(
                    routes.iter().map(|r| nearhost_ipam::RouteSpec { dst: r.dst, gw: r.gateway }),
                );
                Ok(out)
            }
            Err(e) => {
                let del = DelRequest {
                    container_id: req.container_id,
                    ifname: req.ifname,
                    prev: Some(&out),
                    port_mappings: req.port_mappings,
                    network: req.network,
                };
                if let Err(undo) = self.inner.del(host, Some(sb), &del) {
                    tracing::warn!("undo {} after a failed hostReach: {undo}", req.ifname);
                }
                Err(e)
            }
        }
    }

    fn del(
        &self, host: &mut Namespace, sandbox: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        // The host link first: the direct datapath's DEL may move devices out
        // of the namespace or find it gone. Only our veth goes (a link the
        // container made under that name has no nhh peer in the host).
        let mut first = None;
        let mut sandbox = sandbox;
        if let Some(sb) = sandbox.as_deref_mut() {
            let name = link_name(req.ifname);
            if let Some(link) = sb.nl.link_by_name(&name).ctx(|| format!("look up {name}"))? {
                let ours =
                    veth::host_end(host, &link)?.is_some_and(|h| h.name.starts_with(HOST_PREFIX));
                if ours {
                    first = container::delete_iface(sb, &name).err();
                } else {
                    tracing::warn!(
                        "{name} in the container is not nearhost's host link; left alone"
                    );
                }
            }
        }
        let inner = self.inner.del(host, sandbox, req);
        match (first, inner) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        self.inner.check(host, sb, req)?;
        let name = link_name(req.ifname);
        let link =
            sb.nl.link_by_name(&name).ctx(|| format!("look up {name}"))?.ok_or_else(|| {
                DatapathError::CheckFailed(format!(
                    "the host link {name} is missing from the container"
                ))
            })?;
        let host_end =
            veth::host_end(host, &link)?.filter(|h| h.name.starts_with(HOST_PREFIX)).ok_or_else(
                || DatapathError::CheckFailed(format!("the host end of {name} is missing")),
            )?;
        veth::check_host_routes(host, &host_end, req)?;
        let mut ctr = sb.nl.routes(false).ctx(|| "list container routes".into())?;
        ctr.extend(sb.nl.routes(true).ctx(|| "list container routes".into())?);
        for r in req.prev.routes.iter().filter(|r| r.gw.is_some_and(|g| g == gateway(g.is_ipv6())))
        {
            if !ctr.iter().any(|c| c.dst == r.dst && c.oif == Some(link.index)) {
                return Err(DatapathError::CheckFailed(format!(
                    "the container's route {} dev {name} is missing",
                    r.dst
                )));
            }
        }
        Ok(())
    }

    fn status(&self, host: &mut Namespace) -> Result<()> {
        self.inner.status(host)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn host_reach_options_are_checked() {
        assert_eq!(HostReach::parse(&json!({})).unwrap(), None);
        assert_eq!(
            HostReach::parse(&json!({"hostReach": {}})).unwrap(),
            Some(HostReach::default())
        );
        let r = HostReach::parse(&json!({"hostReach": {"serviceCIDRs": ["10.96.0.0/12", "fd00::/108"], "hostCIDRs": ["192.0.2.7"]}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.service_cidrs.len(), 2);
        assert_eq!(r.host_cidrs, ["192.0.2.7/32".parse::<IpNet>().unwrap()]);
        for (conf, says) in [
            (json!({"hostReach": true}), "hostReach: expected an object"),
            (json!({"hostReach": {"services": []}}), "hostReach.services: unknown option"),
            (
                json!({"hostReach": {"serviceCIDRs": "10.96.0.0/12"}}),
                "hostReach.serviceCIDRs: expected a list",
            ),
            (
                json!({"hostReach": {"serviceCIDRs": ["10.96.0.0/33"]}}),
                "hostReach.serviceCIDRs[0]: \"10.96.0.0/33\" is not a CIDR",
            ),
            (
                json!({"hostReach": {"hostCIDRs": ["0.0.0.0/0"]}}),
                "hostReach.hostCIDRs[0]: 0.0.0.0/0 would send all",
            ),
            (
                json!({"hostReach": {"hostCIDRs": [7]}}),
                "hostReach.hostCIDRs[0]: expected a CIDR string",
            ),
        ] {
            let e = HostReach::parse(&conf).unwrap_err().to_string();
            assert!(e.contains(says), "{conf}: {e}");
        }
        assert_eq!(link_name("eth0"), "hr-eth0");
        assert_eq!(link_name("a-very-long-nic"), "hr-a-very-long-");
    }
}
