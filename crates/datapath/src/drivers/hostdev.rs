//! hostdev: a whole NIC (a cloud ENI hot-plugged into the VM, a spare port)
//! moved into the container. Selected by `device`, `hwaddr` or `pciBusID` — the
//! field names of the reference host-device plugin. DEL moves it back with its
//! name, MTU, addresses and routes. The NIC carrying the host's default route is
//! refused unless `allowDefaultRoute: true`. With `"deviceDriver": "vfio-pci"`
//! the NIC stays in the host, handed to vfio-pci for a DPDK application in the
//! container ([`crate::userspace`]); one bound to vfio-pci already is named by
//! `pciBusID`.

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
use crate::userspace::{self, Handed};

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
    /// Handed to a userspace driver rather than moved into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    userspace: Option<Handed>,
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

    fn in_container(&self) -> bool {
        self.userspace.is_none()
    }

    fn reclaim_driver(&self) -> Result<()> {
        match (&self.userspace, &self.dev.pci) {
            (Some(h), Some(pci)) => h.give_back(&Sysfs::from_env(), pci),
            _ => Ok(()),
        }
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
    userspace: Option<userspace::Options>,
}

/// The selected NIC: its interface in the host, or — held by the userspace
/// driver already — its PCI address alone.
enum Found {
    Netdev(Link),
    Held,
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
    let userspace = userspace::Options::parse(&f, "NIC")?;
    Ok(Box::new(Hostdev {
        select,
        allow_default_route: f.bool("allowDefaultRoute")?.unwrap_or(false),
        mtu: f.mtu("mtu")?,
        userspace,
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

    /// [`Self::find`], or for a userspace driver also a NIC that driver holds
    /// already (by `pciBusID`), with its PCI address.
    fn find_device(&self, host: &mut Namespace) -> Result<(Found, String)> {
        let sysfs = Sysfs::from_env();
        if let (Some(u), Selector::PciBusId(pci)) = (&self.userspace, &self.select) {
            let driver = sysfs.pci_driver(pci).ctx(|| format!("read the driver of {pci}"))?;
            if driver.as_deref() == Some(u.driver.as_str()) {
                return Ok((Found::Held, pci.clone()));
            }
        }
        let link = self.find(host)?;
        let pci = sysfs
            .netdev_pci_address(&link.name)
            .ctx(|| format!("read the PCI address of {}", link.name))?;
        match (pci, &self.userspace) {
            (Some(pci), _) => Ok((Found::Netdev(link), pci)),
            (None, Some(u)) => Err(DatapathError::config(
                self.field(),
                format!(
                    "{} is no PCI device: only a PCI NIC can be handed to {}",
                    link.name, u.driver
                ),
            )),
            (None, None) => Ok((Found::Netdev(link), String::new())),
        }
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
        let (_, pci) = self.find_device(host)?;
        match &self.userspace {
            Some(u) => {
                let sysfs = Sysfs::from_env();
                u.check_host(&sysfs)?;
                u.check_device(&sysfs, self.field(), &pci).map(|_| ())
            }
            None => Ok(()),
        }
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let store = moved::claims_of::<HostdevClaim>();
        let (found, pci) = self.find_device(host)?;
        let link = match (found, &self.userspace) {
            (found, Some(u)) => return self.hand_over(host, sb, &store, found, &pci, u, req),
            (Found::Netdev(link), None) => link,
            (Found::Held, None) => {
                return Err(DatapathError::config(self.field(), self.not_found()))
            }
        };
        let mut claim = claim(host, &store, Some(&link), req, &pci)?;
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
        if self.userspace.is_none() {
            return moved::check_claimed::<HostdevClaim>(sb, req, self.mtu, 1, "NIC").map(|_| ());
        }
        let claims = moved::recorded::<HostdevClaim>(req, 1, "NIC")?;
        match (&claims[0].userspace, &claims[0].dev.pci) {
            (Some(h), Some(pci)) => h.check(&Sysfs::from_env(), pci),
            _ => Err(DatapathError::CheckFailed(format!(
                "{} was moved into the container as an interface, not handed to a userspace driver",
                claims[0].key()
            ))),
        }
    }

    fn sandbox_names(&self, ifname: &str) -> Vec<String> {
        match self.userspace {
            // Nothing is made in the container's namespace.
            Some(_) => Vec::new(),
            None => vec![ifname.to_string()],
        }
    }
}

impl Hostdev {
    /// ADD of a NIC for a userspace driver: checked, claimed (with the driver
    /// that held it, before it changes), handed over, its device-info file
    /// written; undone on failure. Addresses from IPAM are reported, not set.
    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &self, host: &mut Namespace, sb: &mut Namespace, store: &ClaimStore, found: Found,
        pci: &str, u: &userspace::Options, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let sysfs = Sysfs::from_env();
        u.check_host(&sysfs)?;
        let group = u.check_device(&sysfs, self.field(), pci)?;
        let link = match &found {
            Found::Netdev(l) => Some(l),
            Found::Held => None,
        };
        let mut claim = claim(host, store, link, req, pci)?;
        let (s, key) = (store.clone(), claim.key());
        let give_back = GiveBack::new(host, sb, pci.to_string(), move |h, sb| {
            moved::release_recorded::<HostdevClaim>(h, Some(sb), &s, &key)
        })?;
        let info = userspace::device_info_path(req.network, req.container_id, req.ifname);
        let mut handed = Handed::record(&sysfs, u, pci, group, info)?;
        claim.userspace = Some(handed.clone());
        save(store, &claim)?;
        handed.hand_over(&sysfs, pci, None)?;
        claim.userspace = Some(handed);
        save(store, &claim)?;
        give_back.disarm();
        let iface = Iface {
            name: req.ifname.to_string(),
            mac: None,
            in_sandbox: true,
            mtu: None,
            pci_id: Some(pci.to_string()),
        };
        let routes = container::ipam_routes(req);
        Ok(Outcome::attached(Vec::new(), iface, &req.addresses_with_gateways(), &routes))
    }
}

fn save(store: &ClaimStore, claim: &HostdevClaim) -> Result<()> {
    let mut locked: Locked<HostdevClaim> = store.lock()?;
    locked.insert(claim.key(), claim.clone());
    locked.commit()
}

/// Records the NIC as this attachment's, with its host addresses and routes
/// (`link`: its interface; `None` when a userspace driver holds it and it has
/// none; `pci`: its PCI address, empty for a virtual one).
fn claim(
    host: &mut Namespace, store: &ClaimStore, link: Option<&Link>, req: &AddRequest<'_>, pci: &str,
) -> Result<HostdevClaim> {
    let pci = Some(pci.to_string()).filter(|p| !p.is_empty());
    let (dev, addresses, routes) = match link {
        None => (
            SavedNetdev::absent(pci.as_deref().unwrap_or_default(), req.ifname),
            Vec::new(),
            Vec::new(),
        ),
        Some(link) => {
            let addrs = host
                .nl
                .addresses(Some(link.index))
                .ctx(|| format!("list the addresses of {}", link.name))?;
            let mut routes = host.nl.routes(false).ctx(|| "list routes".into())?;
            routes.extend(host.nl.routes(true).ctx(|| "list routes".into())?);
            (
                SavedNetdev::new(link, pci, req.ifname),
                // Link-local addresses and the kernel's prefix routes come back by themselves.
                addrs.iter().filter(|a| !a.scope_link).map(|a| (a.ip, a.prefix)).collect(),
                routes
                    .into_iter()
                    .filter(|r| r.oif == Some(link.index) && !r.proto_kernel)
                    .collect(),
            )
        }
    };
    let claim = HostdevClaim {
        network: req.network.to_string(),
        container_id: req.container_id.to_string(),
        ifname: req.ifname.to_string(),
        dev,
        addresses,
        routes,
        userspace: None,
    };
    let mut locked: Locked<HostdevClaim> = store.lock()?;
    if let Some(other) = locked.claims().get(&claim.key()) {
        return Err(DatapathError::Busy(format!(
            "{} is claimed by container {} ({})",
            link.map_or_else(|| claim.key(), |l| l.name.clone()),
            other.container_id,
            other.ifname
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
