//! A VF's way into a container and back: claim it (recording what DEL must
//! restore), apply its PF settings, move it in; and give it back (see
//! [`crate::moved`]) with its PF settings restored and the claim released.

use nearhost_kernel::link::{Link, Mac};
use nearhost_kernel::sriov::VfSetting;
use nearhost_kernel::sysfs::Sysfs;

use crate::claims::{ClaimStore, Locked};
use crate::context::Namespace;
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::moved::{self, GiveBack, SavedNetdev};
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
        let picked = vf::pick(locked.claims(), want.pf, vfs, want.vf, &uplinks)?;
        let c = new_claim(host, owner, want, picked.index, &picked.pci, &picked.netdevs[0])?;
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

/// Reads what the VF is like now: its interface in the host and its PF settings.
fn new_claim(
    host: &mut Namespace, owner: Owner<'_>, want: &Want<'_>, vf: u32, pci: &str, netdev: &str,
) -> Result<VfClaim> {
    let link = host.nl.link_by_name(netdev).ctx(|| format!("look up VF interface {netdev}"))?.ok_or_else(|| {
        DatapathError::Busy(format!("VF {vf} of {} ({pci}): sysfs shows interface {netdev}, but the host namespace has none", want.pf))
    })?;
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
        dev: SavedNetdev::new(&link, Some(pci.to_string()), &want.sandbox_name),
        applied: want.settings.clone(),
        restore: vf_settings::originals(&want.settings, before),
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
    /// temporary name (recording its index there). Returns the index.
    pub fn take(
        &mut self, host: &mut Namespace, sb: &mut Namespace, settings: &[VfSetting],
    ) -> Result<u32> {
        let c = &self.claim;
        let pf = pf_link(host, "pf", &c.pf)?;
        for s in settings {
            host.nl.set_vf(pf.index, c.vf, s).ctx(|| {
                format!("{}: PF {} refused VF {} {s}", vf_settings::field_of(s), c.pf, c.vf)
            })?;
        }
        moved::move_in(host, sb, &self.store, &mut self.claim)
    }

    /// Gives the VF `mac` as its administrative MAC through the PF, if the PF
    /// takes it. The change is recorded first, so that DEL undoes it even after
    /// a crash, and forgotten again when the PF refuses. Whether it took.
    pub fn try_admin_mac(&mut self, host: &mut Namespace, mac: Mac) -> Result<bool> {
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
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::info!("PF {} does not set VF {vf}'s MAC ({e})", pf.name);
                self.claim = recorded;
                self.save().map(|()| false)
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

pub(crate) fn restore_pf_settings(host: &mut Namespace, c: &VfClaim) -> Result<()> {
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
    join(errors)
}
