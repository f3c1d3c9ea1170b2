//! bridge: a veth per container into a Linux bridge on the host, optionally the
//! subnet's gateway (`isGateway`) with masquerade (`ipMasq`) and port mappings —
//! Docker's default network, and the baseline the fast datapaths are measured
//! against.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_kernel::link::{Link, NewLink, NewLinkKind};
use nearhost_kernel::route::Route;
use serde_json::Value;

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::guard::Undo;
use crate::{host, nat, veth};

pub const REGISTRATION: Registration = Registration { name: "bridge", build };

pub const DEFAULT_BRIDGE: &str = "nh0";

/// Bridge attachment options (also used by the vxlan datapath).
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub ip_masq: bool,
    /// Forward for the containers even if the bridge is not their gateway
    /// (vxlan).
    pub forwarding: bool,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

impl BridgeOptions {
    pub fn parse(conf: &Value, default_bridge: &str) -> Result<Self> {
        let f = Fields::new(conf)?;
        let is_default_gateway = f.bool("isDefaultGateway")?.unwrap_or(false);
        Ok(BridgeOptions {
            bridge: f.ifname("bridge")?.unwrap_or(default_bridge).to_string(),
            // A default gateway must be the gateway.
            is_gateway: f.bool("isGateway")?.unwrap_or(false) || is_default_gateway,
            is_default_gateway,
            ip_masq: f.bool("ipMasq")?.unwrap_or(false),
            forwarding: false,
            mtu: f.mtu("mtu")?,
            mac: f.str("mac")?.map(|m| fields::parse_unicast_mac("mac", m)).transpose()?,
        })
    }
}

struct Bridge {
    opts: BridgeOptions,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    Ok(Box::new(Bridge { opts: BridgeOptions::parse(conf, DEFAULT_BRIDGE)? }))
}

impl Datapath for Bridge {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        check_existing_bridge(host, &self.opts.bridge).map(|_| ())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        attach(host, sb, req, &self.opts)
    }

    fn del(
        &self, host: &mut Namespace, sb: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        detach(host, sb, req)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        check(host, sb, req, &self.opts)
    }
}

/// The bridge if it exists; an error if the name belongs to a non-bridge.
fn check_existing_bridge(host: &mut Namespace, name: &str) -> Result<Option<Link>> {
    let link = host.nl.link_by_name(name).ctx(|| format!("look up bridge {name}"))?;
    match link {
        Some(l) if l.kind.as_deref() != Some("bridge") => Err(DatapathError::config(
            "bridge",
            format!(
                "{name:?} exists in the host namespace but is a {} link, not a bridge",
                l.kind.as_deref().unwrap_or("physical")
            ),
        )),
        other => Ok(other),
    }
}

/// Finds or creates the bridge and brings it up (safe against concurrent ADDs).
/// The second value is true when this call created it.
pub fn ensure_bridge(host: &mut Namespace, name: &str, mtu: Option<u32>) -> Result<(Link, bool)> {
    let mut created = false;
    let link = match check_existing_bridge(host, name)? {
        Some(l) => l,
        None => {
            let spec = NewLink {
                name: name.to_string(),
                kind: NewLinkKind::Bridge,
                netns: None,
                mtu: None,
                mac: None,
            };
            match host.nl.create_link(&spec) {
                Ok(()) => created = true,
                Err(e) if e.is_exists() => {} // another ADD made it first
                Err(e) => {
                    return Err(DatapathError::Kernel {
                        context: format!("create bridge {name}"),
                        source: e,
                    })
                }
            }
            check_existing_bridge(host, name)?.ok_or_else(|| {
                DatapathError::Conflict(format!(
                    "bridge {name} vanished right after it was created"
                ))
            })?
        }
    };
    if let Some(m) = mtu {
        if link.mtu != m && !link.up {
            host.nl.set_mtu(link.index, m).ctx(|| format!("set MTU {m} on bridge {name}"))?;
        }
    }
    if !link.up {
        host.nl.set_link_up(link.index, true).ctx(|| format!("bring bridge {name} up"))?;
    }
    Ok((link, created))
}

/// Rolls back a bridge this ADD created, unless another container joined it
/// meanwhile (then it is theirs too).
fn bridge_guard(host: &Namespace, bridge: &Link, created: bool) -> Undo<impl FnOnce()> {
    let ns = if created { host.ns.try_clone().ok() } else { None };
    let index = bridge.index;
    Undo::new(move || {
        let Some(ns) = ns else { return };
        let Ok(mut nl) = nearhost_kernel::Netlink::open_in(&ns) else { return };
        let in_use =
            nl.links().map(|ls| ls.iter().any(|l| l.master == Some(index))).unwrap_or(true);
        if !in_use {
            let _ = nl.delete_link(index);
        }
    })
}

/// Gives the bridge the gateway address of every assigned subnet.
fn add_gateways(
    host: &mut Namespace, bridge: &Link, req: &AddRequest<'_>,
) -> Result<Vec<(IpAddr, u8)>> {
    let mut added = Vec::new();
    for a in req.addresses {
        let gw = a.gateway.ok_or_else(|| {
            DatapathError::config(
                "isGateway",
                format!(
                    "is set but IPAM gave no gateway for {}; add \"gateway\" to the range",
                    a.address.trunc()
                ),
            )
        })?;
        host.nl
            .add_address(bridge.index, gw, a.address.prefix_len(), true)
            .ctx(|| format!("add gateway {gw} to bridge {}", bridge.name))?;
        added.push((gw, a.address.prefix_len()));
    }
    Ok(added)
}

/// ADD for bridge-based datapaths.
pub fn attach(
    host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>, o: &BridgeOptions,
) -> Result<Outcome> {
    let (bridge, created) = ensure_bridge(host, &o.bridge, o.mtu)?;
    let bridge_undo = bridge_guard(host, &bridge, created);
    if o.is_gateway {
        add_gateways(host, &bridge, req)?;
    }
    if o.is_gateway || o.forwarding {
        let v4 = req.addresses.iter().any(|a| a.address.addr().is_ipv4());
        let v6 = req.addresses.iter().any(|a| a.address.addr().is_ipv6());
        // Containers' packets enter the host's IP stack by the bridge.
        host::ensure_forwarding(host, v4, v6.then_some(bridge.name.as_str()))?;
    }
    let pair = veth::create(host, sb, "nhv", o.mtu, req.mac.or(o.mac))?;
    host.nl
        .set_master(pair.host.index, Some(bridge.index))
        .ctx(|| format!("attach {} to bridge {}", pair.host.name, o.bridge))?;
    host.nl.set_link_up(pair.host.index, true).ctx(|| format!("bring {} up", pair.host.name))?;
    let mut routes = container::ipam_routes(req);
    if o.is_default_gateway {
        add_default_routes(req, &mut routes);
    }
    let setup = Setup::standard(pair.sandbox_index, req, routes.clone());
    let link = container::finish(sb, &setup)?;
    if o.ip_masq || !req.port_mappings.is_empty() {
        let subnets: Vec<IpNet> = if o.ip_masq {
            req.addresses.iter().map(|a| a.address.trunc()).collect()
        } else {
            Vec::new()
        };
        let addresses: Vec<IpAddr> = req.addresses.iter().map(|a| a.address.addr()).collect();
        let tag = nat::tag(req.network, req.container_id, req.ifname);
        nat::ensure(host, &subnets, req.port_mappings, &addresses, &tag)?;
    }
    pair.guard.disarm();
    bridge_undo.disarm();
    let bridge = host
        .nl
        .link_by_index(bridge.index)
        .ctx(|| "read back the bridge".into())?
        .unwrap_or(bridge);
    let host_side = vec![Iface::of(&bridge, false), Iface::of(&pair.host, false)];
    Ok(Outcome::attached(
        host_side,
        Iface::of(&link, true),
        &req.addresses_with_gateways(),
        &routes,
    ))
}

fn add_default_routes(req: &AddRequest<'_>, routes: &mut Vec<Route>) {
    for a in req.addresses {
        let v6 = a.address.addr().is_ipv6();
        if routes.iter().any(|r| r.is_v6() == v6 && r.is_default()) {
            continue;
        }
        let mut r = Route::default_of(v6);
        r.gateway = a.gateway;
        routes.push(r);
    }
}

/// DEL for bridge-based datapaths: the container end takes the host end with it.
pub fn detach(
    host: &mut Namespace, sb: Option<&mut Namespace>, req: &DelRequest<'_>,
) -> Result<()> {
    // Only this attachment's rules, whatever prevResult says (or if it is missing).
    if !req.port_mappings.is_empty() {
        nat::remove_mappings(host, &nat::tag(req.network, req.container_id, req.ifname))?;
    }
    container::delete_if_present(sb, req.ifname)
}

/// CHECK for bridge-based datapaths.
pub fn check(
    host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>, o: &BridgeOptions,
) -> Result<()> {
    let link = container::check_sandbox(sb, req)?;
    let host_end = veth::host_end(host, &link)?.ok_or_else(|| {
        DatapathError::CheckFailed(format!("the host end of {}'s veth pair is missing", req.ifname))
    })?;
    let bridge = check_existing_bridge(host, &o.bridge)?
        .ok_or_else(|| DatapathError::CheckFailed(format!("bridge {} is missing", o.bridge)))?;
    if host_end.master != Some(bridge.index) {
        return Err(DatapathError::CheckFailed(format!(
            "{} is not attached to bridge {}",
            host_end.name, o.bridge
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_default_gateway_is_the_gateway_and_the_bridge_has_a_default_name() {
        let o = BridgeOptions::parse(&json!({"isDefaultGateway": true}), DEFAULT_BRIDGE).unwrap();
        assert!(o.is_gateway && o.is_default_gateway);
        assert_eq!(o.bridge, "nh0");
    }
}
