//! hostdev: a whole NIC (a cloud ENI hot-plugged into the VM, a spare port)
//! moved into the container. Selected by `device`, `hwaddr` or `pciBusID` — the
//! field names of the reference host-device plugin. DEL moves it back with its
//! name, MTU, addresses and routes. The NIC carrying the host's default route is
//! refused unless `allowDefaultRoute: true`.

use std::net::IpAddr;

use nearhost_kernel::link::{format_mac, Link, Mac};
use nearhost_kernel::route::Route;
use nearhost_kernel::sysfs::Sysfs;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claims::{ClaimStore, Locked};
use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::host;
use crate::moved::{self, DeviceClaim, GiveBack, SavedNetdev};

pub const REGISTRATION: Registration = Registration { name: "hostdev", build };

/// A NIC held by one attachment, with what DEL must put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostdevClaim {
    network: String,
    container_id: String,
    ifname: String,
    dev: SavedNetdev,
    /// Its addresses in the host (the kernel drops them on a namespace move).
    addresses: Vec<(IpAddr, u8)>,
    /// Routes through it in the host's main table (they go with the addresses).
    routes: Vec<Route>,
}

impl DeviceClaim for HostdevClaim {
    /// The claims file of moved NICs.
    const KIND: &'static str = "hostdev";

    fn key(&self) -> String {
        self.dev.pci.clone().unwrap_or_else(|| format!("name:{}", self.dev.host_name))
    }

    fn owner(&self) -> (&str, &str, &str) {
        (&self.network, &self.container_id, &self.ifname)
    }

    fn dev(&self) -> &SavedNetdev {
        &self.dev
    }

    fn dev_mut(&mut self) -> &mut SavedNetdev {
        &mut self.dev
    }

    /// Its host addresses and the routes through it (the kernel dropped them
    /// when the NIC left the namespace).
    fn restore_more(&self, host: &mut Namespace, index: u32) -> Result<()> {
        restore_addressing(host, index, self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Device(String),
    HwAddr(Mac),
    PciBusId(String),
}

struct Hostdev {
    select: Selector,
    allow_default_route: bool,
    mtu: Option<u32>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    let device = f.ifname("device")?.map(|d| Selector::Device(d.to_string()));
    let hwaddr = f
        .str("hwaddr")?
        .map(|m| fields::parse_unicast_mac("hwaddr", m))
        .transpose()?
        .map(Selector::HwAddr);
    let pci = f.str("pciBusID")?.map(parse_pci).transpose()?.map(Selector::PciBusId);
    let mut given: Vec<Selector> = [device, hwaddr, pci].into_iter().flatten().collect();
    if given.len() > 1 {
        return Err(DatapathError::config(
            "device",
            "give only one of \"device\", \"hwaddr\" and \"pciBusID\"",
        ));
    }
    let select = given.pop().ok_or_else(|| {
        DatapathError::config("device", "is required: name the NIC by \"device\" (interface name), \"hwaddr\" (MAC) or \"pciBusID\"")
    })?;
    Ok(Box::new(Hostdev {
        select,
        allow_default_route: f.bool("allowDefaultRoute")?.unwrap_or(false),
        mtu: f.mtu("mtu")?,
    }))
}

/// A PCI address as sysfs spells it: `0000:3b:00.1` (domain:bus:device.function, lower case).
fn parse_pci(text: &str) -> Result<String> {
    let lower = text.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split([':', '.']).collect();
    let widths = [4, 2, 2, 1];
    let ok = parts.len() == 4
        && parts
            .iter()
            .zip(widths)
            .all(|(p, w)| p.len() == w && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(DatapathError::config(
            "pciBusID",
            format!("{text:?} is not a PCI address (e.g. 0000:3b:00.1)"),
        ));
    }
    Ok(lower)
}

impl Hostdev {
    fn field(&self) -> &'static str {
        match self.select {
            Selector::Device(_) => "device",
            Selector::HwAddr(_) => "hwaddr",
            Selector::PciBusId(_) => "pciBusID",
        }
    }

    /// The selected NIC in the host namespace, refused if it carries the
    /// host's default route (unless allowed).
    fn find(&self, host: &mut Namespace) -> Result<Link> {
        let link = match &self.select {
            Selector::Device(name) => {
                host.nl.link_by_name(name).ctx(|| format!("look up {name}"))?
            }
            Selector::HwAddr(mac) => {
                let links = host.nl.links().ctx(|| "list interfaces".into())?;
                links.into_iter().find(|l| l.mac == Some(*mac) || l.perm_mac == Some(*mac))
            }
            Selector::PciBusId(pci) => host::link_by_pci(host, pci)?,
        };
        let link = link.ok_or_else(|| {
            DatapathError::config(
                self.field(),
                format!("{} in the host namespace", self.not_found()),
            )
        })?;
        if !self.allow_default_route && host::carries_default_route(host, link.index)? {
            return Err(DatapathError::config(
                self.field(),
                format!("{} carries the host's default route; moving it would cut the host off (set \"allowDefaultRoute\": true to move it anyway)", link.name),
            ));
        }
        Ok(link)
    }

    fn not_found(&self) -> String {
        match &self.select {
            Selector::Device(name) => format!("no interface named {name:?}"),
            Selector::HwAddr(mac) => format!("no interface with MAC {}", format_mac(mac)),
            Selector::PciBusId(pci) => format!(
                "PCI device {pci} has no network interface (is it bound to a network driver?)"
            ),
        }
    }
}

impl Datapath for Hostdev {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        self.find(host).map(|_| ())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let link = self.find(host)?;
        let store = moved::claims_of::<HostdevClaim>();
        let mut claim = claim(host, &store, &link, req)?;
        let (s, key) = (store.clone(), claim.key());
        let give_back = GiveBack::new(host, sb, link.name.clone(), move |h, sb| {
            moved::release_recorded::<HostdevClaim>(h, Some(sb), &s, &key)
        })?;
        let index = moved::move_in(host, sb, &store, &mut claim)?;
        if let Some(m) = self.mtu {
            sb.nl.set_mtu(index, m).ctx(|| format!("set MTU {m} on {}", link.name))?;
        }
        let routes = container::ipam_routes(req);
        let addresses = req.addresses.iter().map(|a| a.address).collect();
        let setup = Setup {
            temp_index: index,
            ifname: req.ifname,
            mac: req.mac,
            addresses,
            routes: routes.clone(),
            neighbours: Vec::new(),
        };
        let moved_link = container::finish(sb, &setup)?;
        let iface = Iface::of(&moved_link, true).with_pci(claim.dev.pci.clone());
        give_back.disarm();
        Ok(Outcome::attached(Vec::new(), iface, &req.addresses_with_gateways(), &routes))
    }

    fn del(
        &self, host: &mut Namespace, sb: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        moved::release_owned::<HostdevClaim>(host, sb, req)
    }

    fn check(
        &self, _host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        moved::check_claimed::<HostdevClaim>(sb, req, self.mtu, 1, "NIC").map(|_| ())
    }
}

/// Records the NIC as this attachment's, with its host addresses and routes.
fn claim(
    host: &mut Namespace, store: &ClaimStore, link: &Link, req: &AddRequest<'_>,
) -> Result<HostdevClaim> {
    let pci = Sysfs::from_env()
        .netdev_pci_address(&link.name)
        .ctx(|| format!("read the PCI address of {}", link.name))?;
    let addrs = host
        .nl
        .addresses(Some(link.index))
        .ctx(|| format!("list the addresses of {}", link.name))?;
    let mut routes = host.nl.routes(false).ctx(|| "list routes".into())?;
    routes.extend(host.nl.routes(true).ctx(|| "list routes".into())?);
    let claim = HostdevClaim {
        network: req.network.to_string(),
        container_id: req.container_id.to_string(),
        ifname: req.ifname.to_string(),
        dev: SavedNetdev::new(link, pci, req.ifname),
        // Link-local addresses and the kernel's prefix routes come back by themselves.
        addresses: addrs.iter().filter(|a| !a.scope_link).map(|a| (a.ip, a.prefix)).collect(),
        routes: routes
            .into_iter()
            .filter(|r| r.oif == Some(link.index) && !r.proto_kernel)
            .collect(),
    };
    let mut locked: Locked<HostdevClaim> = store.lock()?;
    if let Some(other) = locked.claims().get(&claim.key()) {
        return Err(DatapathError::Busy(format!(
            "{} is claimed by container {} ({})",
            link.name, other.container_id, other.ifname
        )));
    }
    locked.insert(claim.key(), claim.clone());
    locked.commit()?;
    Ok(claim)
}

fn restore_addressing(host: &mut Namespace, index: u32, claim: &HostdevClaim) -> Result<()> {
    let name = &claim.dev.host_name;
    let mut errors = Vec::new();
    for (ip, prefix) in &claim.addresses {
        if let Err(e) = host.nl.add_address(index, *ip, *prefix, false) {
            errors.push(DatapathError::Kernel {
                context: format!("restore address {ip}/{prefix} on {name}"),
                source: e,
            });
        }
    }
    // Routes need the link up and their gateways on-link: only after the above.
    for r in claim.routes.iter().filter(|_| claim.dev.was_up) {
        let r = Route { oif: Some(index), ..r.clone() };
        if let Err(e) = host.nl.add_route(&r) {
            errors.push(DatapathError::Kernel {
                context: format!("restore a route through {name}"),
                source: e,
            });
        }
    }
    join(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pci_addresses_are_checked_and_lower_cased() {
        assert_eq!(parse_pci("0000:3B:00.1").unwrap(), "0000:3b:00.1");
        for bad in ["3b:00.1", "0000:3b:00", "0000:3g:00.1", "0000:3b:00.12", ""] {
            let e = parse_pci(bad).unwrap_err().to_string();
            assert!(e.starts_with("pciBusID: ") && e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(build(&json!({"pciBusID": "0000:3b:00.1"})).is_ok());
    }
}
