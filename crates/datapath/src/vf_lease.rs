//! A VF's way into a container and back: claim it (recording what DEL must
//! restore), apply its PF settings, move it in; and give it back (see
//! [`crate::moved`]) with its PF settings restored and the claim released.

use std::path::PathBuf;

use nearhost_kernel::link::{Link, Mac};
use nearhost_kernel::sriov::VfSetting;
use nearhost_kernel::sysfs::Sysfs;

use crate::claims::{ClaimStore, Locked};
use crate::context::Namespace;
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::moved::{self, GiveBack, SavedNetdev};
use crate::userspace::{self, Handed};
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
    /// The userspace driver the VF is for (`vfio-pci`); `None`: it moves into
    /// the container as an interface.
    pub userspace: Option<&'a str>,
}

/// A claimed VF until ADD succeeds ([`VfLease::keep`]). Dropped before that, it
/// is given back as DEL would and the claim released: a failed ADD leaves the
/// VF in the host namespace with its settings.
pub struct VfLease {
    claim: VfClaim,
    store: ClaimStore,
    give_back: GiveBack,
}

/// The attachment a VF is claimed for: network, container ID, `CNI_IFNAME`.
pub type Owner<'a> = (&'a str, &'a str, &'a str);

/// Claims one VF per `want`, all in one locked transaction: all or none.
pub fn claim(
    host: &mut Namespace, sb: &Namespace, store: &ClaimStore, owner: Owner<'_>, wants: &[Want<'_>],
) -> Result<Vec<VfLease>> {
    let sysfs = Sysfs::from_env();
    let found =
        wants.iter().map(|w| vf::discover(&sysfs, w.field, w.pf)).collect::<Result<Vec<_>>>()?;
    let uplinks = uplinks(host)?;
    let mut locked: Locked<VfClaim> = store.lock()?;
    let mut claims = Vec::new();
    for (want, vfs) in wants.iter().zip(&found) {
        let picked = vf::pick(locked.claims(), want.pf, vfs, want.vf, &uplinks, want.userspace)?;
        let c = new_claim(host, owner, want, picked.index, &picked.pci, picked.netdevs.first())?;
        locked.insert(c.pci.clone(), c.clone());
        claims.push(c);
    }
    locked.commit()?;
    let lease = |claim: VfClaim| -> Result<VfLease> {
        let (store, pci) = (store.clone(), claim.pci.clone());
        let what = format!("VF {} of {}", claim.vf, claim.pf);
        // The claim as recorded then, not as now: ADD may have added to it.
        let rollback = store.clone();
        let give_back = GiveBack::new(host, sb, what, move |h, s| {
            moved::release_recorded::<VfClaim>(h, Some(s), &rollback, &pci)
        })?;
        Ok(VfLease { claim, store, give_back })
    };
    claims.into_iter().map(lease).collect()
}

/// The host interfaces carrying a default route: DESIGN forbids moving them.
fn uplinks(host: &mut Namespace) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for index in host.nl.default_route_links().ctx(|| "read the default route".into())? {
        names.extend(
            host.nl.link_by_index(index).ctx(|| format!("look up link #{index}"))?.map(|l| l.name),
        );
    }
    Ok(names)
}

/// Reads what the VF is like now: its interface in the host (none when a
/// userspace driver holds it) and its PF settings.
fn new_claim(
    host: &mut Namespace, owner: Owner<'_>, want: &Want<'_>, vf: u32, pci: &str,
    netdev: Option<&String>,
) -> Result<VfClaim> {
    let dev = match netdev {
        None => SavedNetdev::absent(pci, &want.sandbox_name),
        Some(netdev) => {
            let link = host.nl.link_by_name(netdev).ctx(|| format!("look up VF interface {netdev}"))?.ok_or_else(|| {
                DatapathError::Busy(format!("VF {vf} of {} ({pci}): sysfs shows interface {netdev}, but the host namespace has none", want.pf))
            })?;
            SavedNetdev::new(&link, Some(pci.to_string()), &want.sandbox_name)
        }
    };
    let pf = pf_link(host, want.field, want.pf)?;
    let states =
        host.nl.vf_states(pf.index).ctx(|| format!("read the VF settings of {}", want.pf))?;
    let before = states.iter().find(|s| s.vf == vf);
    Ok(VfClaim {
        network: owner.0.to_string(),
        container_id: owner.1.to_string(),
        ifname: owner.2.to_string(),
        pf: want.pf.to_string(),
        vf,
        pci: pci.to_string(),
        dev,
        applied: want.settings.clone(),
        restore: vf_settings::originals(&want.settings, before),
        userspace: None,
    })
}

/// The PF's link in the host namespace.
pub fn pf_link(host: &mut Namespace, field: &str, pf: &str) -> Result<Link> {
    host.nl.link_by_name(pf).ctx(|| format!("look up PF {pf}"))?.ok_or_else(|| {
        DatapathError::config(field, format!("no interface named {pf:?} in the host namespace"))
    })
}

impl VfLease {
    pub fn claim(&self) -> &VfClaim {
        &self.claim
    }

    /// Applies the PF settings, then moves the VF into the container under its
    /// temporary name (recording its index there). Returns the index. A
    /// setting the PF refuses ends ADD with the refusal; the claim then lists
    /// only what the PF took, so that the rollback undoes just that.
    pub fn take(
        &mut self, host: &mut Namespace, sb: &mut Namespace, settings: &[VfSetting],
    ) -> Result<u32> {
        self.apply(host, settings)?;
        moved::move_in(host, sb, &self.store, &mut self.claim)
    }

    /// Applies the PF settings, then hands the VF to a userspace driver
    /// (recorded in the claim first: whatever happens next, DEL or the
    /// rollback binds its driver back) and writes its device-info file.
    pub fn hand_over(
        &mut self, host: &mut Namespace, settings: &[VfSetting], opts: &userspace::Options,
        group: u32, device_info: PathBuf,
    ) -> Result<()> {
        self.apply(host, settings)?;
        let sysfs = Sysfs::from_env();
        let pci = self.claim.pci.clone();
        let mut handed = Handed::record(&sysfs, opts, &pci, group, device_info)?;
        self.claim.userspace = Some(handed.clone());
        self.save()?;
        let pf_pci = sysfs
            .netdev_pci_address(&self.claim.pf)
            .ctx(|| format!("read the PCI address of {}", self.claim.pf))?;
        handed.hand_over(&sysfs, &pci, pf_pci.as_deref())?;
        self.claim.userspace = Some(handed);
        self.save()
    }

    /// Applies the PF settings; a refused one ends ADD (see [`Self::take`]).
    fn apply(&mut self, host: &mut Namespace, settings: &[VfSetting]) -> Result<()> {
        let (pf_name, vf) = (self.claim.pf.clone(), self.claim.vf);
        let pf = pf_link(host, "pf", &pf_name)?;
        // `settings` are the last of the claim's `applied` (a bond member's
        // shared MAC comes before them).
        let before = self.claim.applied.len().saturating_sub(settings.len());
        for (i, s) in settings.iter().enumerate() {
            if let Err(e) = host.nl.set_vf(pf.index, vf, s) {
                self.forget_from(before + i)?;
                return Err(refusal(&pf_name, vf, s, e));
            }
        }
        if let Some(mac) = settings.iter().find_map(admin_mac) {
            if self.claim.dev.host_index != 0 {
                adopt_admin_mac(host, self.claim.dev.host_index, &self.claim.dev.host_name, mac)?;
            }
        }
        Ok(())
    }

    /// Drops the settings from `applied[n]` on (the PF did not take them) and
    /// what would undo them.
    fn forget_from(&mut self, n: usize) -> Result<()> {
        let c = &mut self.claim;
        let dropped = c.applied.len().saturating_sub(n);
        c.applied.truncate(n);
        // `restore` undoes `applied` in reverse: its first entries undo the last.
        c.restore.drain(..dropped.min(c.restore.len()));
        self.save()
    }

    /// Gives the VF `mac` as its administrative MAC through the PF, if the PF
    /// takes it. The change is recorded first, so that DEL undoes it even after
    /// a crash, and forgotten again when the PF refuses (the VF then keeps its own).
    pub fn try_admin_mac(&mut self, host: &mut Namespace, mac: Mac) -> Result<()> {
        let (pf, vf) = (pf_link(host, "pfs", &self.claim.pf)?, self.claim.vf);
        let states =
            host.nl.vf_states(pf.index).ctx(|| format!("read the VF settings of {}", pf.name))?;
        let setting = VfSetting::Mac(mac);
        let recorded = self.claim.clone();
        self.claim.applied.insert(0, setting);
        self.claim
            .restore
            .extend(vf_settings::originals(&[setting], states.iter().find(|s| s.vf == vf)));
        self.save()?;
        match host.nl.set_vf(pf.index, vf, &setting) {
            Ok(()) => {
                adopt_admin_mac(host, self.claim.dev.host_index, &self.claim.dev.host_name, mac)
            }
            Err(e) => {
                tracing::info!("PF {} does not set VF {vf}'s MAC ({e})", pf.name);
                self.claim = recorded;
                self.save()
            }
        }
    }

    fn save(&self) -> Result<()> {
        let mut locked: Locked<VfClaim> = self.store.lock()?;
        locked.insert(self.claim.pci.clone(), self.claim.clone());
        locked.commit()
    }

    /// ADD succeeded: the VF stays with the container.
    pub fn keep(self) {
        self.give_back.disarm();
    }
}

pub(crate) fn restore_pf_settings(
    host: &mut Namespace, c: &VfClaim, index: Option<u32>,
) -> Result<()> {
    if c.restore.is_empty() {
        return Ok(());
    }
    let pf = pf_link(host, "pf", &c.pf)?;
    let mut errors = Vec::new();
    for s in &c.restore {
        if let Err(e) = host.nl.set_vf(pf.index, c.vf, s) {
            errors.push(DatapathError::Kernel {
                context: format!("restore VF {} {s} on {}", c.vf, c.pf),
                source: e,
            });
        }
    }
    if let (Some(mac), Some(index)) =
        (c.restore.iter().find_map(admin_mac).filter(|m| *m != [0; 6]), index)
    {
        errors.extend(adopt_admin_mac(host, index, &c.dev.host_name, mac).err());
    }
    join(errors)
}

fn admin_mac(s: &VfSetting) -> Option<Mac> {
    match s {
        VfSetting::Mac(m) => Some(*m),
        _ => None,
    }
}

/// Makes the VF's driver take the MAC its PF has just assigned. A VF driver
/// reads its MAC from the PF only when it resets — igbvf on every link down —
/// and until then keeps the old one, while the PF refuses any MAC but the
/// assigned one from an untrusted VF (EADDRNOTAVAIL: what made enslaving igb
/// VFs to a bond fail). Cycling the link of a VF nobody uses yet makes it
/// reset. It is left down; whoever brings it up next finds the new MAC.
fn adopt_admin_mac(host: &mut Namespace, index: u32, name: &str, mac: Mac) -> Result<()> {
    let Some(link) = host.nl.link_by_index(index).ctx(|| format!("look up VF {name}"))? else {
        return Ok(());
    };
    if link.mac == Some(mac) {
        return Ok(());
    }
    let ctx = |what: &str| format!("{what} VF {name} so its driver takes the MAC its PF assigned");
    if !link.up {
        host.nl.set_link_up(index, true).ctx(|| ctx("bring up"))?;
    }
    host.nl.set_link_up(index, false).ctx(|| ctx("bring down"))
}

/// A setting the PF refused. A driver that cannot do it (EOPNOTSUPP, igb for
/// a VF's link state; EPROTONOSUPPORT, 802.1ad VLANs; EINVAL, igb for a
/// minimum rate) makes it a config this NIC cannot honour: the field, the
/// value and the driver are named. Anything else is a kernel error.
fn refusal(pf: &str, vf: u32, s: &VfSetting, e: nearhost_kernel::KernelError) -> DatapathError {
    let field = vf_settings::field_of(s);
    match e.errno() {
        Some(libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::EINVAL | libc::ERANGE) => {
            let driver = Sysfs::from_env()
                .netdev_driver(pf)
                .ok()
                .flatten()
                .map_or_else(String::new, |d| format!(" (driver {d})"));
            DatapathError::config(
                field,
                format!("PF {pf}{driver} refuses VF {vf} {s}: {}", e.reason()),
            )
        }
        _ => DatapathError::Kernel {
            context: format!("{field}: PF {pf} refused VF {vf} {s}"),
            source: e,
        },
    }
}
