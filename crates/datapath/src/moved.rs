//! Devices that are moved into a container rather than created there (SR-IOV
//! VFs, whole NICs): what they were like in the host, the move in under a
//! temporary name, and the way back — out of the container, or found by PCI
//! address when the container's namespace is gone — with name, MTU, MAC and
//! up/down state restored.

use std::os::fd::AsFd;

use nearhost_kernel::link::{format_mac, temp_link_name, Link, Mac};
use nearhost_kernel::sysfs::Sysfs;
use nearhost_kernel::NetNs;
use serde::{Deserialize, Serialize};

use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};

/// A device as it was in the host namespace, and its names in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNetdev {
    pub host_name: String,
    pub mtu: u32,
    pub mac: Option<Mac>,
    pub was_up: bool,
    /// Its PCI address, when it has one: the way to find it again by sysfs.
    pub pci: Option<String>,
    /// Its name while it moves into the container, then its final name there.
    pub temp_name: String,
    pub sandbox_name: String,
}

impl SavedNetdev {
    pub fn new(link: &Link, pci: Option<String>, sandbox_name: &str) -> Self {
        SavedNetdev {
            host_name: link.name.clone(),
            mtu: link.mtu,
            mac: link.mac,
            was_up: link.up,
            pci,
            temp_name: temp_link_name(),
            sandbox_name: sandbox_name.to_string(),
        }
    }
}

/// Moves the device into the container under its temporary name; returns its
/// index there.
pub fn move_in(host: &mut Namespace, sb: &mut Namespace, dev: &SavedNetdev) -> Result<u32> {
    let name = &dev.host_name;
    let link = host.nl.require_link(name).ctx(|| format!("look up {name}"))?;
    host.nl
        .move_and_rename_link(link.index, sb.ns.as_fd(), &dev.temp_name)
        .ctx(|| format!("move {name} into the container"))?;
    let moved = sb.nl.link_by_name(&dev.temp_name).ctx(|| format!("look up {} in the container", dev.temp_name))?;
    moved
        .map(|l| l.index)
        .ok_or_else(|| DatapathError::Conflict(format!("{name} did not appear in the container as {}", dev.temp_name)))
}

/// Moves the device out of the container into the host under a temporary name,
/// or finds it in the host by PCI address: when a namespace dies, the kernel
/// returns physical devices to the initial namespace, renamed `devN` if their
/// name is taken there. Its index in the host, if it is anywhere to be found.
pub fn bring_home(host: &mut Namespace, sb: Option<&mut Namespace>, dev: &SavedNetdev) -> Result<Option<u32>> {
    if let Some(sb) = sb {
        // The temporary name first: if ADD failed before the rename, an
        // interface called `sandbox_name` in the container is not ours.
        for name in [&dev.temp_name, &dev.sandbox_name] {
            let Some(link) = sb.nl.link_by_name(name).ctx(|| format!("look up {name} in the container"))? else { continue };
            let temp = temp_link_name();
            sb.nl
                .move_and_rename_link(link.index, host.ns.as_fd(), &temp)
                .ctx(|| format!("move {name} (host name {}) back to the host namespace", dev.host_name))?;
            return Ok(host.nl.link_by_name(&temp).ctx(|| format!("look up {temp}"))?.map(|l| l.index));
        }
    }
    let Some(pci) = &dev.pci else { return Ok(None) };
    let sysfs = Sysfs::from_env();
    for name in sysfs.pci_netdevs(pci).ctx(|| format!("read the interfaces of {pci}"))? {
        if let Some(l) = host.nl.link_by_name(&name).ctx(|| format!("look up {name}"))? {
            return Ok(Some(l.index));
        }
    }
    Ok(None)
}

/// Name, MTU, MAC and up/down state as they were before ADD.
pub fn restore(host: &mut Namespace, index: u32, dev: &SavedNetdev) -> Result<()> {
    let Some(now) = host.nl.link_by_index(index).ctx(|| format!("look up {}", dev.host_name))? else { return Ok(()) };
    if now.up {
        // The kernel refuses to rename a running interface (EBUSY).
        host.nl.set_link_up(index, false).ctx(|| format!("bring {} down", now.name))?;
    }
    if now.name != dev.host_name {
        host.nl.rename_link(index, &dev.host_name).map_err(|e| match e.is_exists() {
            true => DatapathError::Conflict(format!("{} is back in the host namespace as {}: the name is taken", dev.host_name, now.name)),
            false => DatapathError::Kernel { context: format!("rename {} back to {}", now.name, dev.host_name), source: e },
        })?;
    }
    if now.mtu != dev.mtu {
        host.nl.set_mtu(index, dev.mtu).ctx(|| format!("restore MTU {} on {}", dev.mtu, dev.host_name))?;
    }
    if let Some(mac) = dev.mac.filter(|m| Some(*m) != now.mac) {
        host.nl.set_mac(index, mac).ctx(|| format!("restore MAC {} on {}", format_mac(&mac), dev.host_name))?;
    }
    if dev.was_up {
        host.nl.set_link_up(index, true).ctx(|| format!("bring {} up", dev.host_name))?;
    }
    Ok(())
}

type GiveBackFn = Box<dyn FnOnce(&mut Namespace, &mut Namespace) -> Result<()>>;

/// Gives a moved device back on drop unless disarmed, so a failed ADD leaves it
/// in the host as it was. It opens its own sockets in both namespaces, so it
/// needs no borrow of the caller's.
pub struct GiveBack {
    host: NetNs,
    sandbox: NetNs,
    what: String,
    action: Option<GiveBackFn>,
}

impl GiveBack {
    pub fn new(
        host: &Namespace,
        sb: &Namespace,
        what: impl Into<String>,
        action: impl FnOnce(&mut Namespace, &mut Namespace) -> Result<()> + 'static,
    ) -> Result<Self> {
        let dup = |ns: &NetNs| ns.try_clone().ctx(|| format!("duplicate the handle of {}", ns.path().display()));
        Ok(GiveBack { host: dup(&host.ns)?, sandbox: dup(&sb.ns)?, what: what.into(), action: Some(Box::new(action)) })
    }

    /// ADD succeeded: the device stays with the container.
    pub fn disarm(mut self) {
        self.action = None;
    }
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        let Some(action) = self.action.take() else { return };
        let reopen = |ns: &NetNs| ns.try_clone().ctx(|| "duplicate a namespace handle".into()).and_then(Namespace::open);
        let result = reopen(&self.host).and_then(|mut h| action(&mut h, &mut reopen(&self.sandbox)?));
        match result {
            Ok(()) => tracing::debug!("rolled back {}", self.what),
            Err(e) => tracing::warn!("rollback of {} failed: {e}", self.what),
        }
    }
}
