//! What a driver is given (namespaces with their sockets, the request) and what it
//! returns (the interfaces, addresses and routes it made) — free of CNI encoding.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_ipam::RouteSpec;
use nearhost_kernel::link::{format_mac, Link, Mac};
use nearhost_kernel::route::Route;
use nearhost_kernel::{NetNs, Netlink};
use serde::{Deserialize, Serialize};

use crate::error::{KernelContext, Result};

/// A network namespace with a netlink socket opened inside it.
pub struct Namespace {
    pub(crate) ns: NetNs,
    pub(crate) nl: Netlink,
}

impl Namespace {
    pub fn open(ns: NetNs) -> Result<Self> {
        let nl = Netlink::open_in(&ns)
            .ctx(|| format!("open netlink socket in {}", ns.path().display()))?;
        Ok(Namespace { ns, nl })
    }

    /// The namespace the calling thread is in (the "host" side of the plugin).
    pub fn current() -> Result<Self> {
        let ns = NetNs::current().ctx(|| "open the current network namespace".into())?;
        let nl = Netlink::open().ctx(|| "open netlink socket".into())?;
        Ok(Namespace { ns, nl })
    }
}

/// An address from IPAM with its prefix and gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A port mapping (runtimeConfig.portMappings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<IpAddr>,
}

/// Everything ADD needs besides the namespaces.
pub struct AddRequest<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// A MAC the runtime asked for (CNI_ARGS MAC= or the `mac` capability).
    pub mac: Option<Mac>,
    pub addresses: &'a [Assigned],
    pub routes: &'a [RouteSpec],
    pub port_mappings: &'a [PortMapping],
    /// The network's name (config `name`): device claims are recorded with it.
    pub network: &'a str,
}

impl AddRequest<'_> {
    /// The assigned addresses with their gateways, as the result lists them.
    pub(crate) fn addresses_with_gateways(&self) -> Vec<(IpNet, Option<IpAddr>)> {
        self.addresses.iter().map(|a| (a.address, a.gateway)).collect()
    }
}

pub struct DelRequest<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// The result of the ADD, when the runtime sent it (prevResult).
    pub prev: Option<&'a Outcome>,
    pub port_mappings: &'a [PortMapping],
    pub network: &'a str,
}

pub struct CheckRequest<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub prev: &'a Outcome,
    pub network: &'a str,
}

/// One interface in the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Inside the container (the result's `sandbox` is then the netns path).
    #[serde(default)]
    pub in_sandbox: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

impl Iface {
    /// An interface as the kernel reports it, in the container (`in_sandbox`)
    /// or on the host.
    pub(crate) fn of(link: &Link, in_sandbox: bool) -> Self {
        Iface {
            name: link.name.clone(),
            // (A device without a link layer, netkit in L3 mode, reports zeros.)
            mac: link.mac.filter(|m| m != &[0; 6]).as_ref().map(format_mac),
            in_sandbox,
            mtu: Some(link.mtu),
            pci_id: None,
        }
    }

    /// The same, for a device named by its PCI address (a VF, a whole NIC).
    pub(crate) fn with_pci(self, pci: Option<String>) -> Self {
        Iface { pci_id: pci, ..self }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpOut {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`Outcome::interfaces`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// What a driver made: the body of a CNI result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub interfaces: Vec<Iface>,
    pub ips: Vec<IpOut>,
    pub routes: Vec<RouteSpec>,
}

impl Outcome {
    /// ADD's result: the host-side interfaces first, then the container
    /// interface that carries `addresses` (with their gateways) and `routes`.
    pub(crate) fn attached(
        host_side: Vec<Iface>, sandbox: Iface, addresses: &[(IpNet, Option<IpAddr>)],
        routes: &[Route],
    ) -> Outcome {
        let index = host_side.len();
        let ips = addresses
            .iter()
            .map(|(a, gw)| IpOut { address: *a, gateway: *gw, interface: Some(index) })
            .collect();
        let mut interfaces = host_side;
        interfaces.push(sandbox);
        let routes = routes.iter().map(|r| RouteSpec { dst: r.dst, gw: r.gateway }).collect();
        Outcome { interfaces, ips, routes }
    }

    /// The index of the container-side interface named `ifname`.
    pub fn sandbox_iface(&self, ifname: &str) -> Option<usize> {
        self.interfaces.iter().position(|i| i.in_sandbox && i.name == ifname)
    }
}
