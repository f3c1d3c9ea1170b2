//! Devices that are moved into a container rather than created there (SR-IOV
//! VFs, whole NICs): what they were like in the host, the move in under a
//! temporary name, and the way back — out of the container, or found by PCI
//! address when the container's namespace is gone — with name, MTU, MAC and
//! up/down state restored. Each moved device is held by a claim
//! ([`DeviceClaim`]); DEL and CHECK of every such datapath go through
//! [`release_owned`] and [`check_claimed`].

use std::os::fd::AsFd;
use std::path::Path;

use nearhost_kernel::link::{format_mac, temp_link_name, Link, Mac};
use nearhost_kernel::NetNs;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::claims::{ClaimStore, Locked};
use crate::container;
use crate::context::{CheckRequest, DelRequest, Namespace};
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::host;

/// A claim on a device moved into a container, kept in the [`ClaimStore`]
/// file of its kind: who holds it, the device as it was, what else DEL must
/// put back.
pub trait DeviceClaim: Serialize + DeserializeOwned + Clone {
    /// The claims file of this kind in a driver state directory.
    const KIND: &'static str;
    /// The claim's key in the file (the device's PCI address where it has one).
    fn key(&self) -> String;
    fn owned_by(&self, container_id: &str, ifname: &str) -> bool;
    fn dev(&self) -> &SavedNetdev;
    /// Puts back what ADD changed beyond the device's name, MTU, MAC and state:
    /// on the device once it is home at `index` (`None`: found nowhere), or on
    /// its PF.
    fn restore_more(&self, host: &mut Namespace, index: Option<u32>) -> Result<()>;
}

/// The claims store of kind `C` in a driver state directory.
pub fn claims_of<C: DeviceClaim>(state_dir: &Path) -> ClaimStore {
    ClaimStore::new(state_dir, C::KIND)
}

/// The claims of one attachment.
pub fn owned<C: DeviceClaim>(
    store: &ClaimStore, container_id: &str, ifname: &str,
) -> Result<Vec<C>> {
    let locked = store.lock::<C>()?;
    Ok(locked.claims().values().filter(|c| c.owned_by(container_id, ifname)).cloned().collect())
}

/// Moves the device back (or finds it by PCI address once its namespace is
/// gone), restores it and releases the claim. Keeps going past failures.
pub fn release<C: DeviceClaim>(
    host: &mut Namespace, sb: Option<&mut Namespace>, store: &ClaimStore, claim: &C,
) -> Result<()> {
    let mut errors = Vec::new();
    let index = bring_home(host, sb, claim.dev())?;
    match index {
        Some(index) => errors.extend(restore(host, index, claim.dev()).err()),
        // A veth stand-in dies with its namespace; a real device vanishes like
        // this only when its driver was unbound (or its VFs disabled).
        None => tracing::warn!(
            "{} ({}) is in neither the container nor the host namespace",
            claim.dev().host_name,
            claim.key()
        ),
    }
    errors.extend(claim.restore_more(host, index).err());
    let mut locked: Locked<C> = store.lock()?;
    if locked.remove(&claim.key()).is_some() {
        errors.extend(locked.commit().err());
    }
    join(errors)
}

/// DEL of a datapath with claimed devices: every claim of the attachment
/// released; a failure does not stop the others.
pub fn release_owned<C: DeviceClaim>(
    host: &mut Namespace, mut sb: Option<&mut Namespace>, req: &DelRequest<'_>,
) -> Result<()> {
    let store = claims_of::<C>(&req.state_dir);
    let mut errors = Vec::new();
    for claim in owned::<C>(&store, req.container_id, req.ifname)? {
        errors.extend(release(host, sb.as_deref_mut(), &store, &claim).err());
    }
    join(errors)
}

/// CHECK of a datapath with claimed devices: the container side as the
/// previous result says, the configured MTU, and `count` claims recorded for
/// the attachment (`what` names the device kind in the error). Returns the
/// container interface and the claims.
pub fn check_claimed<C: DeviceClaim>(
    sb: &mut Namespace, req: &CheckRequest<'_>, mtu: Option<u32>, count: usize, what: &str,
) -> Result<(Link, Vec<C>)> {
    let link = container::check_sandbox(sb, req)?;
    if let Some(m) = mtu.filter(|m| *m != link.mtu) {
        return Err(DatapathError::CheckFailed(format!(
            "{} has MTU {}, config says {m}",
            req.ifname, link.mtu
        )));
    }
    let claims = owned::<C>(&claims_of::<C>(&req.state_dir), req.container_id, req.ifname)?;
    if claims.is_empty() {
        return Err(DatapathError::CheckFailed(format!(
            "no {what} claim is recorded for container {} ({}) in {}",
            req.container_id,
            req.ifname,
            req.state_dir.display()
        )));
    }
    if claims.len() != count {
        return Err(DatapathError::CheckFailed(format!(
            "{} {what} claims are recorded for {} ({}), not {count}",
            claims.len(),
            req.container_id,
            req.ifname
        )));
    }
    Ok((link, claims))
}

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
    let moved = sb
        .nl
        .link_by_name(&dev.temp_name)
        .ctx(|| format!("look up {} in the container", dev.temp_name))?;
    moved.map(|l| l.index).ok_or_else(|| {
        DatapathError::Conflict(format!(
            "{name} did not appear in the container as {}",
            dev.temp_name
        ))
    })
}

/// Moves the device out of the container into the host under a temporary name,
/// or finds it in the host by PCI address: when a namespace dies, the kernel
/// returns physical devices to the initial namespace, renamed `devN` if their
/// name is taken there. Its index in the host, if it is anywhere to be found.
pub fn bring_home(
    host: &mut Namespace, sb: Option<&mut Namespace>, dev: &SavedNetdev,
) -> Result<Option<u32>> {
    if let Some(sb) = sb {
        // The temporary name first: if ADD failed before the rename, an
        // interface called `sandbox_name` in the container is not ours.
        for name in [&dev.temp_name, &dev.sandbox_name] {
            let Some(link) =
                sb.nl.link_by_name(name).ctx(|| format!("look up {name} in the container"))?
            else {
                continue;
            };
            let temp = temp_link_name();
            sb.nl.move_and_rename_link(link.index, host.ns.as_fd(), &temp).ctx(|| {
                format!("move {name} (host name {}) back to the host namespace", dev.host_name)
            })?;
            return Ok(host
                .nl
                .link_by_name(&temp)
                .ctx(|| format!("look up {temp}"))?
                .map(|l| l.index));
        }
    }
    let Some(pci) = &dev.pci else { return Ok(None) };
    Ok(host::link_by_pci(host, pci)?.map(|l| l.index))
}

/// Name, MTU, MAC and up/down state as they were before ADD.
pub fn restore(host: &mut Namespace, index: u32, dev: &SavedNetdev) -> Result<()> {
    let Some(now) = host.nl.link_by_index(index).ctx(|| format!("look up {}", dev.host_name))?
    else {
        return Ok(());
    };
    if now.up {
        // The kernel refuses to rename a running interface (EBUSY).
        host.nl.set_link_up(index, false).ctx(|| format!("bring {} down", now.name))?;
    }
    if now.name != dev.host_name {
        host.nl.rename_link(index, &dev.host_name).map_err(|e| match e.is_exists() {
            true => DatapathError::Conflict(format!(
                "{} is back in the host namespace as {}: the name is taken",
                dev.host_name, now.name
            )),
            false => DatapathError::Kernel {
                context: format!("rename {} back to {}", now.name, dev.host_name),
                source: e,
            },
        })?;
    }
    if now.mtu != dev.mtu {
        host.nl
            .set_mtu(index, dev.mtu)
            .ctx(|| format!("restore MTU {} on {}", dev.mtu, dev.host_name))?;
    }
    if let Some(mac) = dev.mac.filter(|m| Some(*m) != now.mac) {
        host.nl
            .set_mac(index, mac)
            .ctx(|| format!("restore MAC {} on {}", format_mac(&mac), dev.host_name))?;
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
        host: &Namespace, sb: &Namespace, what: impl Into<String>,
        action: impl FnOnce(&mut Namespace, &mut Namespace) -> Result<()> + 'static,
    ) -> Result<Self> {
        let dup = |ns: &NetNs| {
            ns.try_clone().ctx(|| format!("duplicate the handle of {}", ns.path().display()))
        };
        Ok(GiveBack {
            host: dup(&host.ns)?,
            sandbox: dup(&sb.ns)?,
            what: what.into(),
            action: Some(Box::new(action)),
        })
    }

    /// ADD succeeded: the device stays with the container.
    pub fn disarm(mut self) {
        self.action = None;
    }
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        let Some(action) = self.action.take() else { return };
        let reopen = |ns: &NetNs| {
            ns.try_clone().ctx(|| "duplicate a namespace handle".into()).and_then(Namespace::open)
        };
        let result =
            reopen(&self.host).and_then(|mut h| action(&mut h, &mut reopen(&self.sandbox)?));
        match result {
            Ok(()) => tracing::debug!("rolled back {}", self.what),
            Err(e) => tracing::warn!("rollback of {} failed: {e}", self.what),
        }
    }
}
