//! Devices that are moved into a container rather than created there (SR-IOV
//! VFs, whole NICs): what they were like in the host, the move in under a
//! temporary name, and the way back — out of the container, or found by PCI
//! address when the container's namespace is gone — with name, MTU, MAC and
//! up/down state restored. Each moved device is held by a claim
//! ([`DeviceClaim`]); DEL, CHECK and GC of every such datapath go through
//! [`release_owned`], [`check_claimed`] and [`gc`].
//!
//! A container with NET_ADMIN can rename its device and give the name to a
//! link of its own, so a device is found in the container by the index it got
//! there, and taken only if the kernel says it is the device ([`Identity`]).
//! What cannot be positively identified is left where it is, and stays claimed.

use std::os::fd::AsFd;

use nearhost_kernel::link::{format_mac, temp_link_name, Link, Mac};
use nearhost_kernel::NetNs;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::claims::{self, ClaimStore, Locked};
use crate::container;
use crate::context::{CheckRequest, DelRequest, Namespace};
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::host;

/// A claim on a device moved into a container, kept in the node-wide
/// [`ClaimStore`] file of its kind: who holds it, the device as it was, what
/// else DEL must put back.
pub trait DeviceClaim: Serialize + DeserializeOwned + Clone {
    /// The claims file of this kind.
    const KIND: &'static str;
    /// The claim's key in the file (the device's PCI address where it has one).
    fn key(&self) -> String;
    /// The attachment holding it: network name, container ID, `CNI_IFNAME`.
    fn owner(&self) -> (&str, &str, &str);
    fn dev(&self) -> &SavedNetdev;
    fn dev_mut(&mut self) -> &mut SavedNetdev;
    /// Puts back what ADD changed beyond the device's name, MTU, MAC and state:
    /// on the device, home at `index`, or on its PF. Only called for a device
    /// positively identified as this claim's.
    fn restore_more(&self, host: &mut Namespace, index: u32) -> Result<()>;
    /// Like `restore_more`, but before the name, MTU, MAC and state: what the
    /// device's own settings depend on (a VF's MAC is its PF's to give).
    /// `index` is `None` when the device has no interface in the host (gone,
    /// or held by a userspace driver): what is not on the device is still put back.
    fn restore_first(&self, _host: &mut Namespace, _index: Option<u32>) -> Result<()> {
        Ok(())
    }
    /// Whether the device was moved into the container; `false` for one
    /// handed to a userspace driver ([`crate::userspace`]), which stays in the host.
    fn in_container(&self) -> bool {
        true
    }
    /// Before the device is looked for in the host: one handed to a userspace
    /// driver goes back to its kernel driver, so its interface reappears. On
    /// failure the claim stays, for the next DEL or GC to retry.
    fn reclaim_driver(&self) -> Result<()> {
        Ok(())
    }
}

/// The node-wide claims store of kind `C`.
pub fn claims_of<C: DeviceClaim>() -> ClaimStore {
    ClaimStore::new(&claims::node_dir(), C::KIND)
}

/// The claims of one attachment.
pub fn owned<C: DeviceClaim>(
    store: &ClaimStore, network: &str, container_id: &str, ifname: &str,
) -> Result<Vec<C>> {
    let locked = store.lock::<C>()?;
    let theirs = |c: &&C| c.owner() == (network, container_id, ifname);
    Ok(locked.claims().values().filter(theirs).cloned().collect())
}

/// Moves the device back (or finds it by PCI address once its namespace is
/// gone), restores it and releases the claim. Keeps going past failures. A
/// device that cannot be positively identified is left where it is and stays
/// claimed (GC, or a DEL once the namespace is gone, releases it later).
pub fn release<C: DeviceClaim>(
    host: &mut Namespace, sb: Option<&mut Namespace>, store: &ClaimStore, claim: &C,
) -> Result<()> {
    let (dev, (_, id, ifname)) = (claim.dev(), claim.owner());
    claim.reclaim_driver()?;
    let sb = if claim.in_container() { sb } else { None };
    let mut errors = Vec::new();
    match bring_home(host, sb, dev)? {
        Home::At(index) => {
            errors.extend(claim.restore_first(host, Some(index)).err());
            errors.extend(restore(host, index, dev).err());
            errors.extend(claim.restore_more(host, index).err());
        }
        // A veth stand-in dies with its namespace; a real device vanishes like
        // this only when its driver was unbound (or its VFs disabled); one
        // handed to a userspace driver before ADD has no interface anyway.
        Home::Gone => {
            if claim.in_container() {
                tracing::warn!(
                    "{} ({}) of container {id} ({ifname}) is in neither the container nor the host namespace: claim released, only its PF settings restored",
                    dev.host_name,
                    claim.key()
                );
            }
            errors.extend(claim.restore_first(host, None).err());
        }
        Home::Unknown(why) => {
            tracing::warn!(
                "{} ({}) of container {id} ({ifname}) is left where it is and stays claimed: {why}",
                dev.host_name,
                claim.key()
            );
            return Ok(());
        }
    }
    let mut locked: Locked<C> = store.lock()?;
    if locked.remove(&claim.key()).is_some() {
        errors.extend(locked.commit().err());
    }
    join(errors)
}

/// [`release`] of the claim recorded now under `key`, if there is one (ADD's
/// rollback: the claim may have grown since it was made).
pub fn release_recorded<C: DeviceClaim>(
    host: &mut Namespace, sb: Option<&mut Namespace>, store: &ClaimStore, key: &str,
) -> Result<()> {
    let claim = store.lock::<C>()?.claims().get(key).cloned();
    claim.map_or(Ok(()), |c| release(host, sb, store, &c))
}

/// DEL of a datapath with claimed devices: every claim of the attachment
/// released; a failure does not stop the others.
pub fn release_owned<C: DeviceClaim>(
    host: &mut Namespace, mut sb: Option<&mut Namespace>, req: &DelRequest<'_>,
) -> Result<()> {
    let store = claims_of::<C>();
    let mut errors = Vec::new();
    for claim in owned::<C>(&store, req.network, req.container_id, req.ifname)? {
        errors.extend(release(host, sb.as_deref_mut(), &store, &claim).err());
    }
    join(errors)
}

/// CNI GC: the claims of `network` whose attachment (container ID, ifname) is
/// not in `valid`, released as DEL releases them when the namespace is gone.
/// Returns what it released (for the log); a failure does not stop the others.
pub fn gc<C: DeviceClaim>(
    host: &mut Namespace, network: &str, valid: &[(String, String)],
) -> Result<Vec<String>> {
    let store = claims_of::<C>();
    if !store.exists() {
        return Ok(Vec::new());
    }
    let stale: Vec<C> = store
        .lock::<C>()?
        .claims()
        .values()
        .filter(|c| {
            let (net, id, ifname) = c.owner();
            net == network && !valid.iter().any(|(v, i)| v == id && i == ifname)
        })
        .cloned()
        .collect();
    let (mut released, mut errors) = (Vec::new(), Vec::new());
    for c in stale {
        let (_, id, ifname) = c.owner();
        let what = format!("{} {} of container {id} ({ifname})", C::KIND, c.key());
        match release(host, None, &store, &c) {
            Ok(()) => released.push(what),
            Err(e) => errors.push(e),
        }
    }
    join(errors).map(|()| released)
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
    Ok((link, recorded(req, count, what)?))
}

/// CHECK: the `count` claims recorded for the attachment.
pub fn recorded<C: DeviceClaim>(
    req: &CheckRequest<'_>, count: usize, what: &str,
) -> Result<Vec<C>> {
    let claims = owned::<C>(&claims_of::<C>(), req.network, req.container_id, req.ifname)?;
    if claims.is_empty() {
        return Err(DatapathError::CheckFailed(format!(
            "no {what} claim is recorded for container {} ({}) on network {}",
            req.container_id, req.ifname, req.network
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
    Ok(claims)
}

/// What the kernel says a device is, beyond the name, MAC and index a
/// container with NET_ADMIN can give a link of its own: its kind (`None` for a
/// device driver's interface — every link made through rtnetlink has one),
/// its permanent MAC, its parent device (the PCI address) and the link it is
/// tied to (a veth's peer, by index and whether it is in another namespace).
/// User space cannot set the first three; a real NIC or VF is identified by
/// them. A veth stand-in in the tests has only the kind and the peer, which a
/// determined container could imitate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub kind: Option<String>,
    pub perm_mac: Option<Mac>,
    pub parent_dev: Option<String>,
    pub peer: Option<u32>,
    pub peer_elsewhere: bool,
}

impl Identity {
    pub fn of(link: &Link) -> Self {
        Identity {
            kind: link.kind.clone(),
            perm_mac: link.perm_mac,
            parent_dev: link.parent_dev.clone(),
            peer: link.parent,
            peer_elsewhere: link.parent_in_other_netns,
        }
    }

    /// Why `link` is not this device; `None` when the kernel says it is.
    pub fn mismatch(&self, link: &Link) -> Option<String> {
        let now = Identity::of(link);
        let kind = |k: &Option<String>| k.clone().unwrap_or_else(|| "device".into());
        let mac = |m: &Option<Mac>| m.as_ref().map_or_else(|| "none".into(), format_mac);
        let parent = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
        let peer = |i: &Identity| match (i.peer, i.peer_elsewhere) {
            (None, _) => "none".to_string(),
            (Some(p), true) => format!("#{p} in another namespace"),
            (Some(p), false) => format!("#{p}"),
        };
        if now.kind != self.kind {
            Some(format!("it is a {} link, not a {}", kind(&now.kind), kind(&self.kind)))
        } else if self.parent_dev.is_none() && now.perm_mac != self.perm_mac {
            // A device with a parent is identified by it (user space cannot
            // make one); its permanent MAC may move: a VF driver reloads it
            // from the PF's administrative MAC whenever it resets (igbvf on
            // every link down), and ADD and DEL change that MAC.
            Some(format!("permanent MAC {}, not {}", mac(&now.perm_mac), mac(&self.perm_mac)))
        } else if now.parent_dev != self.parent_dev {
            let (now, was) = (parent(&now.parent_dev), parent(&self.parent_dev));
            Some(format!("parent device {now}, not {was}"))
        } else if (now.peer, now.peer_elsewhere) != (self.peer, self.peer_elsewhere) {
            Some(format!("its peer is {}, not {}", peer(&now), peer(self)))
        } else {
            None
        }
    }
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
    /// Its index in the host namespace when it was claimed.
    #[serde(default)]
    pub host_index: u32,
    #[serde(default)]
    pub identity: Identity,
    /// Its index in the container, recorded once it is there: DEL looks for it
    /// by this, never by a name.
    #[serde(default)]
    pub sandbox_index: Option<u32>,
}

impl SavedNetdev {
    /// A device with no interface in the host (held by a userspace driver):
    /// known by its PCI address alone.
    pub fn absent(pci: &str, sandbox_name: &str) -> Self {
        SavedNetdev {
            host_name: String::new(),
            mtu: 0,
            mac: None,
            was_up: false,
            pci: Some(pci.to_string()),
            temp_name: temp_link_name(),
            sandbox_name: sandbox_name.to_string(),
            host_index: 0,
            identity: Identity { parent_dev: Some(pci.to_string()), ..Identity::default() },
            sandbox_index: None,
        }
    }

    pub fn new(link: &Link, pci: Option<String>, sandbox_name: &str) -> Self {
        SavedNetdev {
            host_name: link.name.clone(),
            mtu: link.mtu,
            mac: link.mac,
            was_up: link.up,
            pci,
            temp_name: temp_link_name(),
            sandbox_name: sandbox_name.to_string(),
            host_index: link.index,
            identity: Identity::of(link),
            sandbox_index: None,
        }
    }
}

/// Moves the claimed device into the container under its temporary name and
/// records in the claim (in `claim` and in `store`) what identifies it there:
/// its identity as the host sees it now — after ADD's PF settings, which may
/// give a VF a new permanent MAC — and its index in the container. Returns the
/// index.
pub fn move_in<C: DeviceClaim>(
    host: &mut Namespace, sb: &mut Namespace, store: &ClaimStore, claim: &mut C,
) -> Result<u32> {
    let (name, temp) = (claim.dev().host_name.clone(), claim.dev().temp_name.clone());
    let link = host.nl.require_link(&name).ctx(|| format!("look up {name}"))?;
    let identity = Identity::of(&link);
    host.nl
        .move_and_rename_link(link.index, sb.ns.as_fd(), &temp)
        .ctx(|| format!("move {name} into the container"))?;
    let moved = sb.nl.link_by_name(&temp).ctx(|| format!("look up {temp} in the container"))?;
    let index =
        moved.filter(|l| identity.mismatch(l).is_none()).map(|l| l.index).ok_or_else(|| {
            DatapathError::Conflict(format!("{name} did not appear in the container as {temp}"))
        })?;
    let record = |c: &mut C| {
        c.dev_mut().identity = identity.clone();
        c.dev_mut().sandbox_index = Some(index);
    };
    record(claim);
    let mut locked: Locked<C> = store.lock()?;
    if let Some(recorded) = locked.get_mut(&claim.key()) {
        record(recorded);
        locked.commit()?;
    }
    Ok(index)
}

/// Where DEL found a claimed device.
#[derive(Debug, PartialEq, Eq)]
pub enum Home {
    /// In the host namespace (moved back, or found there) at this index.
    At(u32),
    /// Nowhere: no container namespace, and not in the host.
    Gone,
    /// The container's namespace holds nothing that is positively the device,
    /// and the host has it neither: why.
    Unknown(String),
}

/// Moves the device out of the container into the host under a temporary
/// name, or finds it in the host by PCI address: when a namespace dies, the
/// kernel returns physical devices to the initial namespace, renamed `devN` if
/// their name is taken there.
pub fn bring_home(
    host: &mut Namespace, sb: Option<&mut Namespace>, dev: &SavedNetdev,
) -> Result<Home> {
    let mut unknown = None;
    if let Some(sb) = sb {
        match in_sandbox(sb, dev)? {
            Ok(index) => {
                // Under its recorded temporary name: if this DEL dies before
                // the rename, the next one finds it in the host by that name.
                let temp = dev.temp_name.clone();
                sb.nl.move_and_rename_link(index, host.ns.as_fd(), &temp).ctx(|| {
                    format!(
                        "move #{index} (host name {}) back to the host namespace",
                        dev.host_name
                    )
                })?;
                let back = host.nl.link_by_name(&temp).ctx(|| format!("look up {temp}"))?;
                return Ok(back.map_or(Home::Gone, |l| Home::At(l.index)));
            }
            Err(why) => unknown = Some(why),
        }
    }
    match in_host(host, dev)? {
        Some(link) => Ok(Home::At(link.index)),
        None => Ok(unknown.map_or(Home::Gone, Home::Unknown)),
    }
}

/// The device in the container: the link at its recorded index, if the kernel
/// says it is the device; else why not.
fn in_sandbox(sb: &mut Namespace, dev: &SavedNetdev) -> Result<std::result::Result<u32, String>> {
    let index = match dev.sandbox_index {
        Some(index) => index,
        // ADD stopped between the move and recording where the device went:
        // then it is under the random temporary name it was moved with (and
        // still only if the kernel says it is the device).
        None => match sb.nl.link_by_name(&dev.temp_name).ctx(|| {
            format!("look up {} in the container", dev.temp_name)
        })? {
            Some(l) => l.index,
            None => {
                return Ok(Err(format!(
                    "its index in the container was never recorded, and no interface there is called {}",
                    dev.temp_name
                )))
            }
        },
    };
    let Some(link) =
        sb.nl.link_by_index(index).ctx(|| format!("look up #{index} in the container"))?
    else {
        return Ok(Err(format!("the container has no interface #{index} (where it was put)")));
    };
    Ok(match dev.identity.mismatch(&link) {
        Some(why) => {
            Err(format!("interface #{index} ({}) in the container is not it: {why}", link.name))
        }
        None => Ok(index),
    })
}

/// The device in the host: by PCI address, or under its temporary name (a DEL
/// that died after moving it back), or — one without either, that never left
/// — at its old index under its own name; only if the kernel says it is the
/// device.
fn in_host(host: &mut Namespace, dev: &SavedNetdev) -> Result<Option<Link>> {
    let by_temp =
        host.nl.link_by_name(&dev.temp_name).ctx(|| format!("look up {}", dev.temp_name))?;
    let found = match &dev.pci {
        Some(pci) => host::link_by_pci(host, pci)?.or(by_temp),
        None if by_temp.is_some() => by_temp,
        None if dev.host_index == 0 => None,
        None => host
            .nl
            .link_by_index(dev.host_index)
            .ctx(|| format!("look up {}", dev.host_name))?
            .filter(|l| l.name == dev.host_name || l.name == dev.temp_name),
    };
    Ok(found.filter(|l| dev.identity.mismatch(l).is_none()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(index: u32, peer: u32, elsewhere: bool) -> Link {
        Link {
            index,
            name: "eth0".into(),
            kind: Some("veth".into()),
            parent: Some(peer),
            parent_in_other_netns: elsewhere,
            ..Link::default()
        }
    }

    fn vf(perm: u8, pci: &str) -> Link {
        Link {
            index: 9,
            name: "eth0".into(),
            perm_mac: Some([2, 0, 0, 0, 0, perm]),
            parent_dev: Some(pci.into()),
            ..Link::default()
        }
    }

    #[test]
    fn a_device_is_itself_whatever_its_name_mac_or_index() {
        let id = Identity::of(&vf(1, "0000:3b:02.1"));
        let renamed =
            Link { name: "hid0".into(), mac: Some([2; 6]), index: 40, ..vf(1, "0000:3b:02.1") };
        assert_eq!(id.mismatch(&renamed), None);
        // A VF's driver reloads its permanent MAC from the PF's administrative
        // one on every reset: its PCI address still says which device it is.
        assert_eq!(id.mismatch(&vf(2, "0000:3b:02.1")), None);
        let stand_in = Identity::of(&veth(3, 7, true));
        assert_eq!(stand_in.mismatch(&Link { name: "x".into(), ..veth(3, 7, true) }), None);
    }

    #[test]
    fn look_alikes_are_refused_with_the_reason() {
        let id = Identity::of(&vf(1, "0000:3b:02.1"));
        let made = veth(9, 10, false);
        assert_eq!(id.mismatch(&made).unwrap(), "it is a veth link, not a device");
        let mut lookalike = veth(9, 10, false);
        lookalike.kind = None;
        lookalike.perm_mac = Some([2, 0, 0, 0, 0, 2]);
        assert_eq!(
            Identity { parent_dev: None, ..id.clone() }.mismatch(&lookalike).unwrap(),
            "permanent MAC 02:00:00:00:00:02, not 02:00:00:00:00:01"
        );
        assert_eq!(
            id.mismatch(&vf(1, "0000:3b:02.2")).unwrap(),
            "parent device 0000:3b:02.2, not 0000:3b:02.1"
        );
        let stand_in = Identity::of(&veth(3, 7, true));
        assert_eq!(
            stand_in.mismatch(&veth(3, 4, false)).unwrap(),
            "its peer is #4, not #7 in another namespace"
        );
    }
}
