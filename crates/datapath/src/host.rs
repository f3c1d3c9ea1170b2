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

/// Turns on IP forwarding in the host namespace for the families in use
/// (routed and gateway datapaths forward between containers and the network).
pub fn ensure_forwarding(host: &Namespace, v4: bool, v6: bool) -> Result<()> {
    netns::run_in(&host.ns, || -> nearhost_kernel::Result<()> {
        if v4 {
            sysctl::ensure(&["net", "ipv4", "ip_forward"], "1")?;
        }
        if v6 {
            sysctl::ensure(&["net", "ipv6", "conf", "all", "forwarding"], "1")?;
        }
        Ok(())
    })
    .and_then(|r| r)
    .ctx(|| "enable IP forwarding in the host namespace".into())
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
