//! A VF's way into a container and back: claim it (recording what DEL must
//! restore), apply its PF settings, move it in under a temporary name; and give
//! it back — out of the container, or found by PCI address when the container's
//! namespace is gone — with its name, MTU, MAC and PF settings restored.

use std::os::fd::AsFd;

use nearhost_kernel::link::{format_mac, temp_link_name, Link};
use nearhost_kernel::sriov::VfSetting;
use nearhost_kernel::sysfs::Sysfs;
use nearhost_kernel::NetNs;

use crate::claims::{ClaimStore, Locked};
use crate::context::Namespace;
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::vf::{self, VfClaim};
use crate::vf_settings;

/// One VF an ADD asks for.
pub struct Want<'a> {
    /// The config field naming the PF (`pf` or `pfs`), for error messages.
    pub field: &'static str,
    pub pf: &'a str,
    /// A fixed VF number, or the first free one.
    pub vf: Option<u32>,
    /// Its name in the container once ADD is done.
    pub sandbox_name: String,
    /// PF settings to apply (the MAC first).
    pub settings: Vec<VfSetting>,
}

/// A claimed VF until ADD succeeds ([`VfLease::keep`]). Dropped before that, it
/// is given back as DEL would and the claim released: a failed ADD leaves the
/// VF in the host namespace with its settings.
pub struct VfLease {
    claim: VfClaim,
    store: ClaimStore,
    host: Option<NetNs>,
    sandbox: Option<NetNs>,
}

/// Claims one VF per `want`, all in one locked transaction: all or none.
pub fn claim(host: &mut Namespace, sb: &Namespace, store: &ClaimStore, owner: (&str, &str), wants: &[Want<'_>]) -> Result<Vec<VfLease>> {
    let sysfs = Sysfs::from_env();
    let found = wants.iter().map(|w| vf::discover(&sysfs, w.field, w.pf)).collect::<Result<Vec<_>>>()?;
    let mut locked: Locked<VfClaim> = store.lock()?;
    let mut claims = Vec::new();
    for (want, vfs) in wants.iter().zip(&found) {
        let picked = vf::pick(locked.claims(), want.pf, vfs, want.vf)?;
        let c = new_claim(host, owner, want, picked.index, &picked.pci, &picked.netdevs[0])?;
        locked.insert(c.pci.clone(), c.clone());
        claims.push(c);
    }
    locked.commit()?;
    let lease = |claim| -> Result<VfLease> {
        Ok(VfLease { claim, store: store.clone(), host: Some(try_clone(&host.ns)?), sandbox: Some(try_clone(&sb.ns)?) })
    };
    claims.into_iter().map(lease).collect()
}

fn try_clone(ns: &NetNs) -> Result<NetNs> {
    ns.try_clone().ctx(|| format!("duplicate the handle of {}", ns.path().display()))
}

/// Reads what the VF is like now: its interface in the host and its PF settings.
fn new_claim(host: &mut Namespace, owner: (&str, &str), want: &Want<'_>, vf: u32, pci: &str, netdev: &str) -> Result<VfClaim> {
    let link = host.nl.link_by_name(netdev).ctx(|| format!("look up VF interface {netdev}"))?.ok_or_else(|| {
        DatapathError::Busy(format!("VF {vf} of {} ({pci}): sysfs shows interface {netdev}, but the host namespace has none", want.pf))
    })?;
    let pf = pf_link(host, want.field, want.pf)?;
    let states = host.nl.vf_states(pf.index).ctx(|| format!("read the VF settings of {}", want.pf))?;
    let before = states.iter().find(|s| s.vf == vf);
    Ok(VfClaim {
        container_id: owner.0.to_string(),
        ifname: owner.1.to_string(),
        pf: want.pf.to_string(),
        vf,
        pci: pci.to_string(),
        host_name: link.name,
        mtu: link.mtu,
        mac: link.mac,
        was_up: link.up,
        temp_name: temp_link_name(),
        sandbox_name: want.sandbox_name.clone(),
        applied: want.settings.clone(),
        restore: vf_settings::originals(&want.settings, before),
    })
}

/// The PF's link in the host namespace.
pub fn pf_link(host: &mut Namespace, field: &str, pf: &str) -> Result<Link> {
    host.nl
        .link_by_name(pf)
        .ctx(|| format!("look up PF {pf}"))?
        .ok_or_else(|| DatapathError::config(field, format!("no interface named {pf:?} in the host namespace")))
}

impl VfLease {
    pub fn claim(&self) -> &VfClaim {
        &self.claim
    }

    /// Applies the PF settings, then moves the VF into the container under its
    /// temporary name. Returns its index there.
    pub fn take(&self, host: &mut Namespace, sb: &mut Namespace, settings: &[VfSetting]) -> Result<u32> {
        let c = &self.claim;
        let pf = pf_link(host, "pf", &c.pf)?;
        for s in settings {
            host.nl.set_vf(pf.index, c.vf, s).ctx(|| format!("{}: PF {} refused VF {} {s}", vf_settings::field_of(s), c.pf, c.vf))?;
        }
        let link = host.nl.require_link(&c.host_name).ctx(|| format!("look up VF interface {}", c.host_name))?;
        host.nl
            .move_and_rename_link(link.index, sb.ns.as_fd(), &c.temp_name)
            .ctx(|| format!("move VF {} of {} ({}) into the container", c.vf, c.pf, c.host_name))?;
        let moved = sb.nl.link_by_name(&c.temp_name).ctx(|| format!("look up {} in the container", c.temp_name))?;
        moved.map(|l| l.index).ok_or_else(|| {
            DatapathError::Conflict(format!("VF {} of {} did not appear in the container as {}", c.vf, c.pf, c.temp_name))
        })
    }

    /// ADD succeeded: the VF stays with the container.
    pub fn keep(mut self) {
        self.host = None;
    }
}

impl Drop for VfLease {
    fn drop(&mut self) {
        let (Some(host), Some(sb)) = (self.host.take(), self.sandbox.take()) else { return };
        let result = Namespace::open(host).and_then(|mut h| {
            let mut sb = Namespace::open(sb)?;
            release(&mut h, Some(&mut sb), &self.store, &self.claim)
        });
        match result {
            Ok(()) => tracing::debug!("rolled back VF {} of {}", self.claim.vf, self.claim.pf),
            Err(e) => tracing::warn!("rollback of VF {} of {} failed: {e}", self.claim.vf, self.claim.pf),
        }
    }
}

/// Puts a claimed VF back as it was and releases the claim. Keeps going past
/// failures and reports them all. The claim stays only while the VF is stuck in
/// the container, so that a retried DEL can finish the job.
pub fn release(host: &mut Namespace, sb: Option<&mut Namespace>, store: &ClaimStore, claim: &VfClaim) -> Result<()> {
    let mut errors = Vec::new();
    match bring_home(host, sb, claim)? {
        Some(index) => errors.extend(restore_netdev(host, index, claim).err()),
        // A veth stand-in dies with its namespace; a real VF never vanishes
        // like this unless its driver was unbound or VFs were disabled.
        None => tracing::warn!(
            "VF {} of {} ({}) is in neither the container nor the host namespace; restoring its PF settings only",
            claim.vf,
            claim.pf,
            claim.pci
        ),
    }
    errors.extend(restore_pf_settings(host, claim).err());
    let mut locked: Locked<VfClaim> = store.lock()?;
    if locked.remove(&claim.pci).is_some() {
        errors.extend(locked.commit().err());
    }
    join(errors)
}

/// Moves the VF out of the container into the host under a temporary name, or
/// finds it in the host by PCI address: when a namespace dies, the kernel
/// returns physical devices to the initial namespace, renamed `devN` if their
/// name is taken there. The index in the host, if it is anywhere to be found.
fn bring_home(host: &mut Namespace, sb: Option<&mut Namespace>, c: &VfClaim) -> Result<Option<u32>> {
    if let Some(sb) = sb {
        // The temporary name first: if ADD failed before the rename, an
        // interface called `sandbox_name` in the container is not ours.
        for name in [&c.temp_name, &c.sandbox_name] {
            let Some(link) = sb.nl.link_by_name(name).ctx(|| format!("look up {name} in the container"))? else { continue };
            let temp = temp_link_name();
            sb.nl
                .move_and_rename_link(link.index, host.ns.as_fd(), &temp)
                .ctx(|| format!("move VF {} of {} ({name}) back to the host namespace", c.vf, c.pf))?;
            return Ok(host.nl.link_by_name(&temp).ctx(|| format!("look up {temp}"))?.map(|l| l.index));
        }
    }
    let sysfs = Sysfs::from_env();
    for name in sysfs.pci_netdevs(&c.pci).ctx(|| format!("read the interfaces of {}", c.pci))? {
        if let Some(l) = host.nl.link_by_name(&name).ctx(|| format!("look up {name}"))? {
            return Ok(Some(l.index));
        }
    }
    Ok(None)
}

/// Name, MTU, MAC and up/down state as they were before ADD.
fn restore_netdev(host: &mut Namespace, index: u32, c: &VfClaim) -> Result<()> {
    let now = host.nl.link_by_index(index).ctx(|| format!("look up VF {} of {}", c.vf, c.pf))?;
    let Some(now) = now else { return Ok(()) };
    if now.up {
        // The kernel refuses to rename a running interface (EBUSY).
        host.nl.set_link_up(index, false).ctx(|| format!("bring {} down", now.name))?;
    }
    if now.name != c.host_name {
        host.nl.rename_link(index, &c.host_name).map_err(|e| match e.is_exists() {
            true => DatapathError::Conflict(format!(
                "VF {} of {} is back in the host namespace as {}: its name {} is taken",
                c.vf, c.pf, now.name, c.host_name
            )),
            false => DatapathError::Kernel { context: format!("rename {} back to {}", now.name, c.host_name), source: e },
        })?;
    }
    if now.mtu != c.mtu {
        host.nl.set_mtu(index, c.mtu).ctx(|| format!("restore MTU {} on {}", c.mtu, c.host_name))?;
    }
    if let Some(mac) = c.mac.filter(|m| Some(*m) != now.mac) {
        host.nl.set_mac(index, mac).ctx(|| format!("restore MAC {} on {}", format_mac(&mac), c.host_name))?;
    }
    if c.was_up {
        host.nl.set_link_up(index, true).ctx(|| format!("bring {} up", c.host_name))?;
    }
    Ok(())
}

fn restore_pf_settings(host: &mut Namespace, c: &VfClaim) -> Result<()> {
    if c.restore.is_empty() {
        return Ok(());
    }
    let pf = pf_link(host, "pf", &c.pf)?;
    let mut errors = Vec::new();
    for s in &c.restore {
        if let Err(e) = host.nl.set_vf(pf.index, c.vf, s) {
            errors.push(DatapathError::Kernel { context: format!("restore VF {} {s} on {}", c.vf, c.pf), source: e });
        }
    }
    join(errors)
}
