//! Host-side helpers shared by drivers: finding the parent interface, MTU
//! limits, IP forwarding.

use nearhost_kernel::link::Link;
use nearhost_kernel::sysfs::Sysfs;
use nearhost_kernel::{netns, sysctl};

use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};

/// The parent interface: the configured `master`, or else the interface of the
/// host namespace's default route.
pub fn resolve_master(host: &mut Namespace, configured: Option<&str>) -> Result<Link> {
    if let Some(name) = configured {
        return host.nl.link_by_name(name).ctx(|| format!("look up master {name}"))?.ok_or_else(
            || {
                DatapathError::config(
                    "master",
                    format!("no interface named {name:?} in the host namespace"),
                )
            },
        );
    }
    let defaults = host.nl.default_route_links().ctx(|| "read the default route".into())?;
    let Some(&index) = defaults.first() else {
        return Err(DatapathError::config(
            "master",
            "not set, and the host namespace has no default route to take it from",
        ));
    };
    host.nl.link_by_index(index).ctx(|| "look up the default-route interface".into())?.ok_or_else(
        || DatapathError::config("master", "not set, and the default-route interface vanished"),
    )
}

/// `mtu` must not exceed the parent's MTU.
pub fn check_mtu_fits(mtu: Option<u32>, parent: &Link) -> Result<()> {
    match mtu {
        Some(m) if m > parent.mtu => Err(DatapathError::config(
            "mtu",
            format!("{m} exceeds the MTU {} of master {}", parent.mtu, parent.name),
        )),
        _ => Ok(()),
    }
}

/// Whether `index` carries one of the host namespace's default routes.
pub fn carries_default_route(host: &mut Namespace, index: u32) -> Result<bool> {
    Ok(host.nl.default_route_links().ctx(|| "read the default route".into())?.contains(&index))
}

/// Turns on forwarding in the host namespace for the families in use (routed
/// and gateway datapaths forward between containers and the network). IPv4:
/// `ip_forward`. IPv6: `force_forwarding` on `v6_iface`, the host-side
/// interface nearhost owns that container traffic enters by — never
/// `all.forwarding`, which puts every interface in router mode and so stops
/// RA processing where accept_ra=1 (the host would lose an RA-learned default
/// route). IPv6 entering by other interfaces (outside to a container: host-gw
/// routes, port mappings) is forwarded only where the operator turns it on.
///
/// A kernel without force_forwarding (before 6.17) can only forward IPv6 with
/// `all.forwarding=1`; there, every interface that learns from RAs
/// (accept_ra=1) is first set to accept_ra=2, which keeps RA processing on in
/// router mode, so the host keeps its RA-learned routes either way.
pub fn ensure_forwarding(host: &Namespace, v4: bool, v6_iface: Option<&str>) -> Result<()> {
    netns::run_in(&host.ns, || forwarding_here(v4, v6_iface))
        .ctx(|| "enter the host namespace".into())?
}

fn forwarding_here(v4: bool, v6_iface: Option<&str>) -> Result<()> {
    let set = |key: &[&str]| {
        sysctl::ensure(key, "1").ctx(|| format!("enable forwarding ({})", key.join(".")))
    };
    if v4 {
        set(&["net", "ipv4", "ip_forward"])?;
    }
    let Some(iface) = v6_iface else { return Ok(()) };
    if sysctl::read(&["net", "ipv6", "conf", "all", "forwarding"]).ok().as_deref() == Some("1") {
        return Ok(());
    }
    let per_iface = ["net", "ipv6", "conf", iface, "force_forwarding"];
    if sysctl::path(&per_iface).exists() {
        return set(&per_iface);
    }
    keep_learning_from_ras()?;
    tracing::info!("this kernel has no per-interface IPv6 forwarding (Linux 6.17): turning on net.ipv6.conf.all.forwarding (RA learning kept with accept_ra=2)");
    set(&["net", "ipv6", "conf", "all", "forwarding"])
}

/// accept_ra=2 on every interface (and the default for new ones) where it is
/// 1: router mode would otherwise stop their RA processing.
fn keep_learning_from_ras() -> Result<()> {
    let names =
        sysctl::children(&["net", "ipv6", "conf"]).ctx(|| "list the IPv6 interfaces".into())?;
    for name in names {
        if name == "all" {
            continue;
        }
        let key = ["net", "ipv6", "conf", name.as_str(), "accept_ra"];
        if sysctl::read(&key).ok().as_deref() == Some("1") {
            sysctl::write(&key, "2").ctx(|| format!("keep RA learning on {name} (accept_ra=2)"))?;
        }
    }
    Ok(())
}

/// The host interface of the PCI device `pci` (a NIC or VF is found by its
/// address, never by a name a container could have given it).
pub fn link_by_pci(host: &mut Namespace, pci: &str) -> Result<Option<Link>> {
    for name in
        Sysfs::from_env().pci_netdevs(pci).ctx(|| format!("read the interfaces of {pci}"))?
    {
        if let Some(l) = host.nl.link_by_name(&name).ctx(|| format!("look up {name}"))? {
            return Ok(Some(l));
        }
    }
    Ok(None)
}
