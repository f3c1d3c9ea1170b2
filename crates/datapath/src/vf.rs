//! SR-IOV virtual functions: discovery from sysfs, claims that keep concurrent
//! ADDs from sharing one, and the per-PF inventory the node agent reports.

use std::collections::BTreeMap;
use std::path::Path;

use nearhost_kernel::sriov::VfSetting;
use nearhost_kernel::sysfs::{Sysfs, VirtFn};
use serde::{Deserialize, Serialize};

use crate::claims::ClaimStore;
use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};
use crate::moved::{DeviceClaim, SavedNetdev};
use crate::userspace::Handed;

/// The claims file of SR-IOV VFs (keyed by PCI address).
pub const CLAIMS: &str = "sriov-vfs";

/// A VF held by one attachment, with everything DEL needs to put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfClaim {
    /// The network (config `name`) of the attachment.
    pub network: String,
    pub container_id: String,
    /// The attachment's `CNI_IFNAME` (for a bond member: the bond's).
    pub ifname: String,
    pub pf: String,
    pub vf: u32,
    pub pci: String,
    /// The VF's interface as it was in the host namespace.
    pub dev: SavedNetdev,
    /// The PF settings ADD applies (CHECK compares them with the PF's report).
    pub applied: Vec<VfSetting>,
    /// The PF settings DEL sends, in this order, to undo ADD's.
    pub restore: Vec<VfSetting>,
    /// Handed to a userspace driver rather than moved into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userspace: Option<Handed>,
}

impl DeviceClaim for VfClaim {
    const KIND: &'static str = CLAIMS;

    fn key(&self) -> String {
        self.pci.clone()
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

    /// The PF settings, first: the VF's MAC comes from them (and nobody else
    /// holds the VF, which is back).
    fn restore_first(&self, host: &mut Namespace, index: Option<u32>) -> Result<()> {
        crate::vf_lease::restore_pf_settings(host, self, index)
    }

    fn in_container(&self) -> bool {
        self.userspace.is_none()
    }

    fn reclaim_driver(&self) -> Result<()> {
        match &self.userspace {
            Some(h) => h.give_back(&Sysfs::from_env(), &self.pci),
            None => Ok(()),
        }
    }

    fn restore_more(&self, _host: &mut Namespace, _index: u32) -> Result<()> {
        Ok(())
    }
}

/// The enabled VFs of `pf`; errors name the config field it came from.
pub fn discover(sysfs: &Sysfs, field: &str, pf: &str) -> Result<Vec<VirtFn>> {
    let ctx = || format!("read the SR-IOV VFs of {pf} from {}", sysfs.root().display());
    let Some(total) = sysfs.sriov_totalvfs(pf).ctx(ctx)? else {
        return Err(DatapathError::config(
            field,
            format!("{pf} is not an SR-IOV physical function (no {}/class/net/{pf}/device/sriov_totalvfs)", sysfs.root().display()),
        ));
    };
    let vfs = sysfs.virtfns(pf).ctx(ctx)?;
    if vfs.is_empty() {
        return Err(DatapathError::config(
            field,
            format!("{pf} has no VFs enabled (it supports {total}): echo N > /sys/class/net/{pf}/device/sriov_numvfs"),
        ));
    }
    Ok(vfs)
}

/// Chooses a VF of `pf`: the configured one, or the first free one. A VF is free
/// when nobody claims it, its interface is visible in the host (one without is
/// inside another namespace or bound to a non-network driver such as vfio-pci)
/// — or, for a `userspace` driver, it is bound to that driver already — and it
/// is not one of the host's `uplinks` (interfaces carrying its default route),
/// which are never moved.
pub fn pick<'a>(
    claims: &BTreeMap<String, VfClaim>, pf: &str, vfs: &'a [VirtFn], wanted: Option<u32>,
    uplinks: &[String], userspace: Option<&str>,
) -> Result<&'a VirtFn> {
    let uplink = |v: &VirtFn| v.netdevs.iter().any(|n| uplinks.contains(n));
    let held = |v: &VirtFn| userspace.is_some() && v.driver.as_deref() == userspace;
    let Some(n) = wanted else {
        let free = |v: &&VirtFn| {
            !claims.contains_key(&v.pci) && (!v.netdevs.is_empty() || held(v)) && !uplink(v)
        };
        return vfs.iter().find(free).ok_or_else(|| no_free_vf(claims, pf, vfs, uplink, held));
    };
    let vf = vfs.iter().find(|v| v.index == n).ok_or_else(|| {
        DatapathError::config("vf", format!("{pf} has no VF {n} (VFs enabled: {})", vfs.len()))
    })?;
    if let Some(c) = claims.get(&vf.pci) {
        return Err(DatapathError::Busy(format!(
            "VF {n} of {pf} is claimed by container {} ({})",
            c.container_id, c.ifname
        )));
    }
    if vf.netdevs.is_empty() && !held(vf) {
        return Err(DatapathError::Busy(format!(
            "VF {n} of {pf} ({}) has no interface in the host namespace",
            vf.pci
        )));
    }
    if uplink(vf) {
        return Err(DatapathError::config(
            "vf",
            format!("VF {n} of {pf} ({}) carries the host's default route", vf.netdevs.join(", ")),
        ));
    }
    Ok(vf)
}

fn no_free_vf(
    claims: &BTreeMap<String, VfClaim>, pf: &str, vfs: &[VirtFn], uplink: impl Fn(&VirtFn) -> bool,
    held: impl Fn(&VirtFn) -> bool,
) -> DatapathError {
    let count = |f: &dyn Fn(&VirtFn) -> bool| vfs.iter().filter(|v| f(v)).count();
    let claimed = count(&|v| claims.contains_key(&v.pci));
    let hidden = count(&|v| !claims.contains_key(&v.pci) && v.netdevs.is_empty() && !held(v));
    let uplinks = count(&|v| !claims.contains_key(&v.pci) && uplink(v));
    let uplinks = if uplinks > 0 {
        format!(", {uplinks} carrying the host's default route")
    } else {
        String::new()
    };
    DatapathError::Busy(format!(
        "no free VF on {pf}: {} enabled, {claimed} claimed by containers, {hidden} without an interface in the host namespace{uplinks}",
        vfs.len()
    ))
}

/// One PF's VFs for the node agent's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PfInventory {
    pub pf: String,
    /// `sriov_totalvfs`: how many VFs the device supports.
    pub total: u32,
    /// `sriov_numvfs`: how many are enabled.
    pub enabled: u32,
    /// Enabled, unclaimed, with an interface in the host namespace.
    pub free: u32,
    pub claimed: Vec<ClaimedVf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedVf {
    pub vf: u32,
    pub pci: String,
    pub container_id: String,
    pub ifname: String,
}

/// The VF inventory of every SR-IOV PF in `sysfs`, with the claims recorded in
/// `claims_dir` (the node-wide claims directory, [`crate::claims::node_dir`]).
pub fn inventory(sysfs: &Sysfs, claims_dir: &Path) -> Result<Vec<PfInventory>> {
    let claims = match claims_dir.is_dir() {
        true => ClaimStore::new(claims_dir, CLAIMS).snapshot::<VfClaim>()?,
        false => BTreeMap::new(),
    };
    let mut out = Vec::new();
    for pf in sysfs.net_devices().ctx(|| format!("list {}/class/net", sysfs.root().display()))? {
        let ctx = || format!("read the SR-IOV VFs of {pf}");
        let Some(total) = sysfs.sriov_totalvfs(&pf).ctx(ctx)? else { continue };
        let vfs = sysfs.virtfns(&pf).ctx(ctx)?;
        let claimed: Vec<ClaimedVf> = vfs
            .iter()
            .filter_map(|v| claims.get(&v.pci).map(|c: &VfClaim| (v, c)))
            .map(|(v, c)| ClaimedVf {
                vf: v.index,
                pci: v.pci.clone(),
                container_id: c.container_id.clone(),
                ifname: c.ifname.clone(),
            })
            .collect();
        let free =
            vfs.iter().filter(|v| !claims.contains_key(&v.pci) && !v.netdevs.is_empty()).count()
                as u32;
        out.push(PfInventory { pf, total, enabled: vfs.len() as u32, free, claimed });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimStore;
    use nearhost_testkit::sysfs::FakeSysfs;
    use std::path::Path;

    /// A fake sysfs with PF `pf0` (0000:01:00.0) and VFs whose interfaces are
    /// `names` ("" = no interface), plus a non-SR-IOV `eth9`.
    fn tree(root: &Path, names: &[&str]) {
        let fake = FakeSysfs::at(root);
        fake.device("0000:01:00.0", Some("pf0"));
        let vfs: Vec<String> = (0..names.len()).map(|i| format!("0000:01:10.{i}")).collect();
        for (vf, name) in vfs.iter().zip(names) {
            fake.device(vf, Some(*name).filter(|n| !n.is_empty()));
        }
        fake.sriov("0000:01:00.0", 16, &vfs.iter().map(String::as_str).collect::<Vec<_>>());
        fake.virtual_netdev("eth9");
    }

    fn claim(vf: &VirtFn, id: &str) -> VfClaim {
        VfClaim {
            network: "net".into(),
            container_id: id.into(),
            ifname: "eth0".into(),
            pf: "pf0".into(),
            vf: vf.index,
            pci: vf.pci.clone(),
            dev: SavedNetdev {
                host_name: vf.netdevs[0].clone(),
                mtu: 1500,
                mac: None,
                was_up: false,
                pci: Some(vf.pci.clone()),
                temp_name: "nhtmp0".into(),
                sandbox_name: "eth0".into(),
                host_index: 7,
                identity: Default::default(),
                sandbox_index: Some(2),
            },
            applied: vec![],
            restore: vec![],
            userspace: None,
        }
    }

    #[test]
    fn discovery_reads_the_vfs_in_order() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &["vfa", "", "vfc"]);
        let vfs = discover(&Sysfs::at(t.path()), "pf", "pf0").unwrap();
        let names: Vec<_> =
            vfs.iter().map(|v| (v.index, v.pci.as_str(), v.netdevs.clone())).collect();
        assert_eq!(names[0], (0, "0000:01:10.0", vec!["vfa".to_string()]));
        assert_eq!(names[1], (1, "0000:01:10.1", vec![]));
        assert_eq!(names[2].0, 2);
    }

    #[test]
    fn discovery_errors_name_the_field_and_the_pf() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &[]);
        let s = Sysfs::at(t.path());
        let e = discover(&s, "pfs", "eth9").unwrap_err().to_string();
        assert!(e.starts_with("pfs: eth9 is not an SR-IOV physical function"), "{e}");
        let e = discover(&s, "pf", "pf0").unwrap_err().to_string();
        assert!(e.starts_with("pf: pf0 has no VFs enabled (it supports 16)"), "{e}");
    }

    #[test]
    fn pick_skips_claimed_vfs_and_vfs_without_an_interface() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &["vfa", "", "vfc", "vfd"]);
        let vfs = discover(&Sysfs::at(t.path()), "pf", "pf0").unwrap();
        let mut claims = BTreeMap::new();
        assert_eq!(pick(&claims, "pf0", &vfs, None, &[], None).unwrap().index, 0);
        claims.insert(vfs[0].pci.clone(), claim(&vfs[0], "c0"));
        assert_eq!(pick(&claims, "pf0", &vfs, None, &[], None).unwrap().index, 2);
        claims.insert(vfs[2].pci.clone(), claim(&vfs[2], "c2"));
        claims.insert(vfs[3].pci.clone(), claim(&vfs[3], "c3"));
        let e = pick(&claims, "pf0", &vfs, None, &[], None).unwrap_err();
        assert!(matches!(e, DatapathError::Busy(_)));
        assert_eq!(e.to_string(), "no free VF on pf0: 4 enabled, 3 claimed by containers, 1 without an interface in the host namespace");
    }

    #[test]
    fn a_configured_vf_must_exist_and_be_free() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &["vfa", "vfb"]);
        let vfs = discover(&Sysfs::at(t.path()), "pf", "pf0").unwrap();
        let mut claims = BTreeMap::new();
        assert_eq!(pick(&claims, "pf0", &vfs, Some(1), &[], None).unwrap().index, 1);
        assert_eq!(
            pick(&claims, "pf0", &vfs, Some(5), &[], None).unwrap_err().to_string(),
            "vf: pf0 has no VF 5 (VFs enabled: 2)"
        );
        claims.insert(vfs[1].pci.clone(), claim(&vfs[1], "other"));
        let e = pick(&claims, "pf0", &vfs, Some(1), &[], None).unwrap_err().to_string();
        assert_eq!(e, "VF 1 of pf0 is claimed by container other (eth0)");
    }

    #[test]
    fn a_vf_carrying_the_host_default_route_is_never_picked() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &["vfa", "vfb"]);
        let vfs = discover(&Sysfs::at(t.path()), "pf", "pf0").unwrap();
        let (claims, uplinks) = (BTreeMap::new(), vec!["vfa".to_string()]);
        assert_eq!(pick(&claims, "pf0", &vfs, None, &uplinks, None).unwrap().index, 1);
        let e = pick(&claims, "pf0", &vfs, Some(0), &uplinks, None).unwrap_err().to_string();
        assert_eq!(e, "vf: VF 0 of pf0 (vfa) carries the host's default route");
        let e = pick(&claims, "pf0", &vfs[..1], None, &uplinks, None).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "0 without an interface in the host namespace, 1 carrying the host's default route"
            ),
            "{e}"
        );
    }

    #[test]
    fn inventory_counts_and_names_claimants() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), &["vfa", "vfb", ""]);
        let sysfs = Sysfs::at(t.path());
        let vfs = discover(&sysfs, "pf", "pf0").unwrap();
        let state = t.path().join("state");
        let mut l = ClaimStore::new(&state, CLAIMS).lock().unwrap();
        l.insert(vfs[1].pci.clone(), claim(&vfs[1], "ctr-b"));
        l.commit().unwrap();
        drop(l);
        let inv = inventory(&sysfs, &state).unwrap();
        assert_eq!(inv.len(), 1, "eth9 is no PF: {inv:?}");
        let pf = &inv[0];
        assert_eq!((pf.pf.as_str(), pf.total, pf.enabled, pf.free), ("pf0", 16, 3, 1));
        assert_eq!(
            pf.claimed,
            vec![ClaimedVf {
                vf: 1,
                pci: "0000:01:10.1".into(),
                container_id: "ctr-b".into(),
                ifname: "eth0".into()
            }]
        );
    }
}
