//! Devices handed to a userspace driver instead of moved into the container:
//! `"deviceDriver": "vfio-pci"` on `sriov` (and devices an operator bound to
//! vfio-pci beforehand). A DPDK application in the container drives the device
//! through `/dev/vfio/GROUP`; no interface appears in the container's
//! namespace, so addresses from IPAM are reported in the result, not set.
//!
//! What ADD checks before anything changes, each refusal saying what is
//! missing and how to get it: the driver loaded, an IOMMU (vfio's unsafe
//! no-IOMMU mode only with `"allowNoIommu": true`), the device alone in its
//! IOMMU group (a group goes to one container whole), hugepages reserved
//! (unless `"requireHugepages": false`). ADD records the device's kernel
//! driver in its claim before it binds the userspace one, so DEL — or the DEL
//! after a crash, or GC — binds the kernel driver back; the device's interface
//! then reappears in the host and is restored like a VF back from a container
//! ([`crate::moved`]). The Network Plumbing WG device-info file
//! (`/var/run/k8s.cni.cncf.io/devinfo/cni/`) tells Multus and the application
//! which device it got; DEL removes it.

use std::path::{Path, PathBuf};

use nearhost_kernel::sysfs::Sysfs;
use serde::{Deserialize, Serialize};

use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::Fields;

/// The userspace drivers nearhost hands devices to.
pub const DRIVERS: &[&str] = &["vfio-pci"];

/// Where the device-info files go, unless `NEARHOST_DEVINFO_DIR` says otherwise.
pub const DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";
pub const DEVINFO_DIR_ENV: &str = "NEARHOST_DEVINFO_DIR";

/// The config's ask: which userspace driver, and what may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub driver: String,
    pub allow_no_iommu: bool,
    pub require_hugepages: bool,
}

impl Options {
    /// `deviceDriver` (and its companions); `None` when the device goes to the
    /// container as a kernel interface. With it, `mtu` is refused: the
    /// `device` ("VF", "NIC") has no interface to set it on.
    pub fn parse(f: &Fields<'_>, device: &str) -> Result<Option<Options>> {
        let Some(driver) = f.str("deviceDriver")? else {
            for companion in ["allowNoIommu", "requireHugepages"] {
                f.refuse(companion, "only applies with \"deviceDriver\": \"vfio-pci\"")?;
            }
            return Ok(None);
        };
        if !DRIVERS.contains(&driver) {
            return Err(DatapathError::config(
                "deviceDriver",
                format!(
                    "{driver:?} is not a userspace driver nearhost hands devices to (known: {}); leave it out for a kernel interface",
                    DRIVERS.join(", ")
                ),
            ));
        }
        f.refuse(
            "mtu",
            &format!("a {device} handed to {driver} has no interface to set it on: its application sets the MTU"),
        )?;
        Ok(Some(Options {
            driver: driver.to_string(),
            allow_no_iommu: f.bool("allowNoIommu")?.unwrap_or(false),
            require_hugepages: f.bool("requireHugepages")?.unwrap_or(true),
        }))
    }

    /// What the machine must have, whichever device is picked: the driver,
    /// an IOMMU, hugepages.
    pub fn check_host(&self, sysfs: &Sysfs) -> Result<()> {
        let ctx = || format!("read {}", sysfs.root().display());
        if !sysfs.pci_driver_loaded(&self.driver) {
            return Err(DatapathError::Unsupported(format!(
                "deviceDriver: the {} driver is not loaded (no {}/bus/pci/drivers/{}): modprobe {}",
                self.driver,
                sysfs.root().display(),
                self.driver,
                self.driver
            )));
        }
        if !sysfs.iommu_present().ctx(ctx)? {
            let noiommu = sysfs.vfio_noiommu().ctx(ctx)?;
            if !(noiommu && self.allow_no_iommu) {
                let mode = match noiommu {
                    true => "vfio's unsafe no-IOMMU mode is on, but the config does not allow it (\"allowNoIommu\": true: the device's DMA is then unchecked)",
                    false => "and vfio's no-IOMMU mode is off",
                };
                return Err(DatapathError::Unsupported(format!(
                    "deviceDriver: this machine has no IOMMU (no groups in {}/kernel/iommu_groups; boot with intel_iommu=on or amd_iommu=on, and the IOMMU on in the firmware) {mode}",
                    sysfs.root().display()
                )));
            }
        }
        if self.require_hugepages {
            let pages = sysfs.hugepages().ctx(ctx)?;
            if pages.iter().all(|p| p.total == 0) {
                return Err(DatapathError::Unsupported(format!(
                    "deviceDriver: no hugepages are reserved, and DPDK applications need them: echo 256 > {}/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages (or \"requireHugepages\": false for one that runs without)",
                    sysfs.root().display()
                )));
            }
        }
        Ok(())
    }

    /// What the device itself must be: alone in its IOMMU group (or the
    /// machine in the allowed no-IOMMU mode). Returns the group.
    pub fn check_device(&self, sysfs: &Sysfs, field: &str, pci: &str) -> Result<u32> {
        let ctx = || format!("read the IOMMU group of {pci}");
        let Some(group) = sysfs.iommu_group(pci).ctx(ctx)? else {
            if self.allow_no_iommu && sysfs.vfio_noiommu().ctx(ctx)? {
                // vfio makes a no-IOMMU group when the device is bound; its
                // number is known only then.
                return Ok(NO_GROUP_YET);
            }
            return Err(DatapathError::Unsupported(format!(
                "{field}: {pci} is in no IOMMU group: the IOMMU does not cover it"
            )));
        };
        let others: Vec<String> =
            sysfs.iommu_group_devices(group).ctx(ctx)?.into_iter().filter(|d| d != pci).collect();
        if !others.is_empty() {
            return Err(DatapathError::config(
                field,
                format!(
                    "{pci} shares IOMMU group {group} with {}: vfio gives a group to one user whole, so the container would get them too (a PCIe switch or root port without ACS)",
                    others.join(", ")
                ),
            ));
        }
        Ok(group)
    }
}

/// The group number recorded before binding in no-IOMMU mode.
const NO_GROUP_YET: u32 = u32::MAX;

/// A device handed to a userspace driver, as its claim records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    /// The userspace driver (`vfio-pci`).
    pub driver: String,
    /// The driver that held the device before ADD (`None`: none), which DEL
    /// binds back. A device the userspace driver held already stays with it.
    pub before: Option<String>,
    pub iommu_group: u32,
    /// The device-info file ADD writes and DEL removes.
    pub device_info: PathBuf,
}

impl Handed {
    /// What the claim records before the device changes hands: the driver
    /// that holds it now (DEL binds it back), its group, its device-info file.
    pub fn record(
        sysfs: &Sysfs, opts: &Options, pci: &str, iommu_group: u32, device_info: PathBuf,
    ) -> Result<Handed> {
        let before = sysfs.pci_driver(pci).ctx(|| format!("read the driver of {pci}"))?;
        Ok(Handed { driver: opts.driver.clone(), before, iommu_group, device_info })
    }

    /// Binds the device to the userspace driver (unless it already is) and
    /// writes its device-info file. `pf_pci`: its PF's address, for a VF.
    pub fn hand_over(&mut self, sysfs: &Sysfs, pci: &str, pf_pci: Option<&str>) -> Result<()> {
        if sysfs.pci_driver(pci).ctx(|| format!("read the driver of {pci}"))?.as_deref()
            != Some(self.driver.as_str())
        {
            sysfs
                .bind_pci_driver(pci, &self.driver)
                .ctx(|| format!("hand {pci} to {}", self.driver))?;
        }
        if self.iommu_group == NO_GROUP_YET {
            self.iommu_group = sysfs
                .iommu_group(pci)
                .ctx(|| format!("read the IOMMU group of {pci}"))?
                .unwrap_or(NO_GROUP_YET);
        }
        write_device_info(&self.device_info, pci, pf_pci)
    }

    /// Gives the device back to the driver that held it before ADD and
    /// removes its device-info file. Safe to repeat.
    pub fn give_back(&self, sysfs: &Sysfs, pci: &str) -> Result<()> {
        remove_file(&self.device_info)?;
        if self.before.as_deref() == Some(self.driver.as_str()) || !sysfs.pci_exists(pci) {
            return Ok(());
        }
        let to = self.before.as_deref().unwrap_or("no driver");
        sysfs
            .restore_pci_driver(pci, self.before.as_deref())
            .ctx(|| format!("give {pci} back from {} to {to}", self.driver))?;
        // Its interface is new: udev names it first, then DEL gives it its old name.
        if !sysfs.settle_udev(pci, std::time::Duration::from_secs(5)) {
            tracing::warn!("udev did not finish with the interface of {pci} within 5 s");
        }
        Ok(())
    }

    /// CHECK: still bound to the userspace driver, its device-info file in place.
    pub fn check(&self, sysfs: &Sysfs, pci: &str) -> Result<()> {
        let now = sysfs.pci_driver(pci).ctx(|| format!("read the driver of {pci}"))?;
        if now.as_deref() != Some(self.driver.as_str()) {
            return Err(DatapathError::CheckFailed(format!(
                "{pci} is bound to {}, not {}",
                now.as_deref().unwrap_or("no driver"),
                self.driver
            )));
        }
        if !self.device_info.exists() {
            return Err(DatapathError::CheckFailed(format!(
                "the device-info file {} of {pci} is gone",
                self.device_info.display()
            )));
        }
        Ok(())
    }
}

/// A device a userspace driver holds, and what a container needs to drive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub pci: String,
    pub driver: String,
    pub iommu_group: Option<u32>,
    /// The device nodes to give the container (`--device`).
    pub device_nodes: Vec<String>,
    /// The rest, in words: hugepages and the memlock limit.
    pub also: String,
}

impl Held {
    /// The Podman/Docker options that start a container able to drive it.
    pub fn run_options(&self) -> String {
        let mut opts: Vec<String> =
            self.device_nodes.iter().map(|d| format!("--device {d}")).collect();
        opts.push("-v /dev/hugepages:/dev/hugepages --ulimit memlock=-1".into());
        opts.join(" ")
    }
}

/// [`Held`] for `pci` if a userspace driver holds it now; `None` otherwise.
pub fn held(pci: &str) -> Option<Held> {
    held_in(&Sysfs::from_env(), pci)
}

fn held_in(sysfs: &Sysfs, pci: &str) -> Option<Held> {
    let driver = sysfs.pci_driver(pci).ok().flatten().filter(|d| DRIVERS.contains(&d.as_str()))?;
    let group = sysfs.iommu_group(pci).ok().flatten();
    let noiommu = sysfs.vfio_noiommu().unwrap_or(false);
    let node = |g: u32| match noiommu && !sysfs.iommu_present().unwrap_or(false) {
        true => format!("/dev/vfio/noiommu-{g}"),
        false => format!("/dev/vfio/{g}"),
    };
    let mut device_nodes: Vec<String> = group.map(node).into_iter().collect();
    device_nodes.push("/dev/vfio/vfio".into());
    Some(Held {
        pci: pci.to_string(),
        driver,
        iommu_group: group,
        device_nodes,
        also: "hugepages mounted at /dev/hugepages and an unlimited memlock limit (DMA memory is pinned)".into(),
    })
}

/// The device-info file of an attachment: `NETWORK-CONTAINERID-IFNAME-device-info.json`.
pub fn device_info_path(network: &str, container_id: &str, ifname: &str) -> PathBuf {
    let dir = match std::env::var_os(DEVINFO_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEVINFO_DIR),
    };
    let name = format!("{network}-{container_id}-{ifname}-device-info.json").replace('/', "-");
    dir.join(name)
}

/// The Network Plumbing WG device-info file (spec 1.1.0) of a PCI device.
fn write_device_info(path: &Path, pci: &str, pf_pci: Option<&str>) -> Result<()> {
    let mut info =
        serde_json::json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}});
    if let Some(pf) = pf_pci {
        info["pci"]["pf-pci-address"] = pf.into();
    }
    let io = |what: String| {
        move |e: std::io::Error| DatapathError::Kernel {
            context: what,
            source: nearhost_kernel::KernelError::io("device-info", e),
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    // Written whole under a temporary name, then renamed: a reader never sees half.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, format!("{info}\n")).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("rename {} into place", tmp.display())))
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DatapathError::Kernel {
            context: format!("remove {}", path.display()),
            source: nearhost_kernel::KernelError::io("device-info", e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearhost_testkit::sysfs::FakeSysfs;
    use serde_json::json;
    use std::os::unix::fs::symlink;

    fn opts(extra: serde_json::Value) -> Result<Option<Options>> {
        let mut conf = json!({"pf": "p"});
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        Options::parse(&Fields::new(&conf)?, "VF")
    }

    /// Device `addr` in IOMMU group `group` (with `others` in it too),
    /// vfio-pci loaded, `pages` 2 MB hugepages.
    fn host(root: &Path, addr: &str, group: Option<u32>, others: &[&str], pages: u64) {
        let fake = FakeSysfs::at(root);
        for a in std::iter::once(&addr).chain(others) {
            let dir = fake.device(a, None);
            if let Some(g) = group {
                let gd = root.join(format!("kernel/iommu_groups/{g}/devices"));
                std::fs::create_dir_all(&gd).unwrap();
                symlink(&dir, gd.join(a)).unwrap();
                symlink(gd.parent().unwrap(), dir.join("iommu_group")).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("bus/pci/drivers/vfio-pci")).unwrap();
        let h = root.join("kernel/mm/hugepages/hugepages-2048kB");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(h.join("nr_hugepages"), format!("{pages}\n")).unwrap();
        std::fs::write(h.join("free_hugepages"), format!("{pages}\n")).unwrap();
    }

    #[test]
    fn the_config_names_a_known_driver_and_companions_need_it() {
        assert_eq!(opts(json!({})).unwrap(), None);
        let o = opts(json!({"deviceDriver": "vfio-pci"})).unwrap().unwrap();
        assert_eq!(
            (o.driver.as_str(), o.allow_no_iommu, o.require_hugepages),
            ("vfio-pci", false, true)
        );
        let e = opts(json!({"deviceDriver": "igb_uio"})).unwrap_err().to_string();
        assert!(e.starts_with("deviceDriver: \"igb_uio\" is not a userspace driver"), "{e}");
        let e = opts(json!({"deviceDriver": "vfio-pci", "mtu": 1400})).unwrap_err().to_string();
        assert!(e.starts_with("mtu: a VF handed to vfio-pci has no interface to set it on"), "{e}");
        let e = opts(json!({"requireHugepages": false})).unwrap_err().to_string();
        assert!(e.starts_with("requireHugepages: only applies with"), "{e}");
        let e = opts(json!({"deviceDriver": "vfio-pci", "allowNoIommu": "yes"})).unwrap_err();
        assert!(e.to_string().starts_with("allowNoIommu:"), "{e}");
    }

    #[test]
    fn a_host_ready_for_vfio_passes_and_each_missing_piece_is_named() {
        let o = opts(json!({"deviceDriver": "vfio-pci"})).unwrap().unwrap();
        let t = tempfile::tempdir().unwrap();
        host(t.path(), "0000:01:10.0", Some(5), &[], 256);
        let s = Sysfs::at(t.path());
        o.check_host(&s).unwrap();
        assert_eq!(o.check_device(&s, "pf", "0000:01:10.0").unwrap(), 5);

        // Hugepages.
        std::fs::write(t.path().join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), "0")
            .unwrap();
        let e = o.check_host(&s).unwrap_err();
        assert!(matches!(e, DatapathError::Unsupported(_)));
        assert!(e.to_string().contains("no hugepages are reserved"), "{e}");
        let lax = opts(json!({"deviceDriver": "vfio-pci", "requireHugepages": false}));
        lax.unwrap().unwrap().check_host(&s).unwrap();

        // The driver.
        std::fs::remove_dir(t.path().join("bus/pci/drivers/vfio-pci")).unwrap();
        let e = o.check_host(&s).unwrap_err().to_string();
        assert!(
            e.contains("the vfio-pci driver is not loaded") && e.contains("modprobe vfio-pci"),
            "{e}"
        );
    }

    #[test]
    fn no_iommu_is_refused_unless_the_unsafe_mode_is_on_and_allowed() {
        let t = tempfile::tempdir().unwrap();
        host(t.path(), "0000:01:10.0", None, &[], 256);
        let s = Sysfs::at(t.path());
        let o = opts(json!({"deviceDriver": "vfio-pci"})).unwrap().unwrap();
        let e = o.check_host(&s).unwrap_err().to_string();
        assert!(
            e.contains("this machine has no IOMMU") && e.ends_with("no-IOMMU mode is off"),
            "{e}"
        );
        let p = t.path().join("module/vfio/parameters");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("enable_unsafe_noiommu_mode"), "Y\n").unwrap();
        let e = o.check_host(&s).unwrap_err().to_string();
        assert!(e.contains("the config does not allow it"), "{e}");
        let allowed = opts(json!({"deviceDriver": "vfio-pci", "allowNoIommu": true}));
        let allowed = allowed.unwrap().unwrap();
        allowed.check_host(&s).unwrap();
        assert_eq!(allowed.check_device(&s, "pf", "0000:01:10.0").unwrap(), NO_GROUP_YET);
        let e = o.check_device(&s, "pf", "0000:01:10.0").unwrap_err().to_string();
        assert_eq!(e, "pf: 0000:01:10.0 is in no IOMMU group: the IOMMU does not cover it");
    }

    #[test]
    fn a_shared_iommu_group_is_refused_with_its_members() {
        let t = tempfile::tempdir().unwrap();
        host(t.path(), "0000:01:10.0", Some(3), &["0000:01:10.1", "0000:01:00.0"], 256);
        let o = opts(json!({"deviceDriver": "vfio-pci"})).unwrap().unwrap();
        let e = o.check_device(&Sysfs::at(t.path()), "pf", "0000:01:10.0").unwrap_err();
        assert!(matches!(e, DatapathError::InvalidConfig { .. }));
        assert!(
            e.to_string().starts_with(
                "pf: 0000:01:10.0 shares IOMMU group 3 with 0000:01:00.0, 0000:01:10.1:"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_held_device_names_its_nodes_and_run_options() {
        let t = tempfile::tempdir().unwrap();
        host(t.path(), "0000:01:10.0", Some(12), &[], 256);
        let s = Sysfs::at(t.path());
        assert_eq!(held_in(&s, "0000:01:10.0"), None, "no driver holds it");
        let dir = s.pci_dir("0000:01:10.0");
        symlink(t.path().join("bus/pci/drivers/vfio-pci"), dir.join("driver")).unwrap();
        let h = held_in(&s, "0000:01:10.0").unwrap();
        assert_eq!((h.driver.as_str(), h.iommu_group), ("vfio-pci", Some(12)));
        assert_eq!(h.device_nodes, vec!["/dev/vfio/12", "/dev/vfio/vfio"]);
        assert_eq!(
            h.run_options(),
            "--device /dev/vfio/12 --device /dev/vfio/vfio -v /dev/hugepages:/dev/hugepages --ulimit memlock=-1"
        );
    }

    #[test]
    fn the_device_info_file_follows_the_spec_and_goes_with_give_back() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("cni/net-ctr/1-net1-device-info.json");
        write_device_info(&path, "0000:01:10.2", Some("0000:01:00.0")).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "pci", "version": "1.1.0",
                   "pci": {"pci-address": "0000:01:10.2", "pf-pci-address": "0000:01:00.0"}})
        );
        let h = Handed {
            driver: "vfio-pci".into(),
            before: Some("vfio-pci".into()),
            iommu_group: 9,
            device_info: path.clone(),
        };
        h.give_back(&Sysfs::at(t.path()), "0000:01:10.2").unwrap();
        assert!(!path.exists());
        h.give_back(&Sysfs::at(t.path()), "0000:01:10.2").unwrap();
        let name = device_info_path("net/a", "c1", "net1");
        assert!(name.ends_with("net-a-c1-net1-device-info.json"), "{}", name.display());
    }
}
