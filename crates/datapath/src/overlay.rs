//! The VXLAN overlay device of a node: its options, its name, the underlay
//! address that is the node's identity (VTEP), and creating it. Shared by the
//! `vxlan` datapath, the agent and the lab, which program remote nodes with
//! [`crate::peers`].

use std::net::IpAddr;

use nearhost_kernel::link::{Link, NewLink, NewLinkKind};
use serde_json::Value;

use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::Fields;
use crate::{host, peers};

/// VXLAN adds 50 bytes (outer Ethernet excluded): IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const OVERHEAD: u32 = 50;
pub const DEFAULT_PORT: u16 = 4789;

#[derive(Debug, Clone)]
pub struct VxlanOptions {
    pub vni: u32,
    pub port: u16,
    pub device: String,
    /// The underlay interface; default: the default-route interface.
    pub underlay: Option<String>,
}

/// The VXLAN device of network `vni` unless the config names one.
pub fn device_name(vni: u32) -> String {
    format!("nhvx{vni}")
}

impl VxlanOptions {
    /// Network `vni` on the default port and device (the agent's and the lab's
    /// peers); `underlay` as in the CNI config.
    pub fn new(vni: u32, underlay: Option<String>) -> Result<Self> {
        if vni == 0 || vni >= 1 << 24 {
            return Err(DatapathError::config(
                "vni",
                format!("{vni} is not a VXLAN network identifier (1..16777215)"),
            ));
        }
        Ok(VxlanOptions { vni, port: DEFAULT_PORT, device: device_name(vni), underlay })
    }

    pub fn parse(conf: &Value) -> Result<Self> {
        let f = Fields::new(conf)?;
        let underlay = f.ifname("underlay")?.or(f.ifname("master")?).map(str::to_string);
        let mut o = VxlanOptions::new(f.u32("vni")?.unwrap_or(1), underlay)?;
        if let Some(p) = f.u32("port")? {
            o.port = u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| DatapathError::config("port", format!("{p} is not a UDP port")))?;
        }
        if let Some(dev) = f.ifname("vxlanDevice")? {
            o.device = dev.to_string();
        }
        Ok(o)
    }
}

/// The address this node's VTEP sends from (the underlay's first address,
/// IPv4 preferred): peers derive the VTEP's MAC from it, so it is the node's
/// identity in a VXLAN cluster.
pub fn vtep_address(host: &mut Namespace, o: &VxlanOptions) -> Result<IpAddr> {
    Ok(underlay(host, o)?.1)
}

/// The underlay interface and its first address (IPv4 preferred).
fn underlay(host: &mut Namespace, o: &VxlanOptions) -> Result<(Link, IpAddr)> {
    let link = host::resolve_master(host, o.underlay.as_deref()).map_err(|e| match e {
        DatapathError::InvalidConfig { reason, .. } => DatapathError::config("underlay", reason),
        other => other,
    })?;
    let addrs =
        host.nl.addresses(Some(link.index)).ctx(|| format!("addresses of {}", link.name))?;
    let local = addrs
        .iter()
        .filter(|a| !a.scope_link)
        .map(|a| a.ip)
        .min_by_key(|ip| ip.is_ipv6())
        .ok_or_else(|| {
            DatapathError::config(
                "underlay",
                format!("{} has no address to send VXLAN from", link.name),
            )
        })?;
    Ok((link, local))
}

/// Finds or creates the VXLAN device (MAC derived from the node's address, so
/// peers know it) and brings it up. Returns it.
pub fn ensure_device(host: &mut Namespace, o: &VxlanOptions) -> Result<Link> {
    if let Some(l) = host.nl.link_by_name(&o.device).ctx(|| format!("look up {}", o.device))? {
        if l.kind.as_deref() != Some("vxlan") {
            return Err(DatapathError::config(
                "vxlanDevice",
                format!("{:?} exists but is a {:?} link, not vxlan", o.device, l.kind),
            ));
        }
        return Ok(l);
    }
    let (under, local) = underlay(host, o)?;
    let spec = NewLink {
        name: o.device.clone(),
        kind: NewLinkKind::Vxlan {
            vni: o.vni,
            local: Some(local),
            port: o.port,
            underlay: Some(under.index),
            learning: false,
        },
        netns: None,
        mtu: Some(under.mtu.saturating_sub(OVERHEAD)),
        mac: Some(peers::vtep_mac(local)),
    };
    match host.nl.create_link(&spec) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {} // a concurrent ADD made it
        Err(e) => {
            return Err(DatapathError::Kernel {
                context: format!("create VXLAN device {}", o.device),
                source: e,
            })
        }
    }
    let link = host.nl.require_link(&o.device).ctx(|| format!("look up {}", o.device))?;
    host.nl.set_link_up(link.index, true).ctx(|| format!("bring {} up", o.device))?;
    Ok(link)
}

/// The VXLAN device of network `vni` under its default name, which a `vxlan`
/// ADD on this node has made.
pub fn existing_device(host: &mut Namespace, vni: u32) -> Result<Link> {
    let name = device_name(vni);
    host.nl.link_by_name(&name).ctx(|| format!("look up {name}"))?.ok_or_else(|| {
        DatapathError::Conflict(format!(
            "VXLAN device {name} does not exist on this node (no vxlan container is attached)"
        ))
    })
}
