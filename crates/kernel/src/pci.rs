//! PCI devices handed to a userspace driver (`vfio-pci`): which driver holds a
//! device, binding it to another and back, its IOMMU group and who shares it,
//! whether the machine has an IOMMU (or vfio's unsafe no-IOMMU mode), and the
//! hugepages a DPDK application needs. Everything is read from and written to
//! sysfs under [`Sysfs::root`], laid out as the kernel lays it out:
//!
//! ```text
//! bus/pci/devices/ADDR/driver            -> the bound driver's directory
//! bus/pci/devices/ADDR/driver_override   which driver may bind it next
//! bus/pci/devices/ADDR/iommu_group       -> kernel/iommu_groups/N
//! bus/pci/drivers/NAME/{bind,unbind}     write an address to (un)bind it
//! bus/pci/drivers_probe                  write an address to probe it
//! kernel/iommu_groups/N/devices/ADDR     the group's members
//! module/vfio/parameters/enable_unsafe_noiommu_mode
//! kernel/mm/hugepages/hugepages-SIZEkB/{nr,free}_hugepages
//! ```

use std::path::Path;

use crate::error::{KernelError, Result};
use crate::sysfs::{link_name, list_dir as list, Sysfs};

/// The hugepages of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hugepages {
    pub size_kb: u64,
    /// `nr_hugepages`: reserved.
    pub total: u64,
    /// `free_hugepages`: reserved and not in use.
    pub free: u64,
}

impl Sysfs {
    /// The driver bound to PCI device `pci` (`igbvf`, `vfio-pci`); `None` when
    /// no driver holds it.
    pub fn pci_driver(&self, pci: &str) -> Result<Option<String>> {
        link_name(&self.pci_dir(pci).join("driver"))
    }

    /// Whether PCI device `pci` exists.
    pub fn pci_exists(&self, pci: &str) -> bool {
        self.pci_dir(pci).exists()
    }

    /// Whether the PCI driver `driver` is loaded (registered with the PCI bus).
    pub fn pci_driver_loaded(&self, driver: &str) -> bool {
        self.root().join("bus/pci/drivers").join(driver).is_dir()
    }

    /// The IOMMU group of PCI device `pci`; `None` without an IOMMU.
    pub fn iommu_group(&self, pci: &str) -> Result<Option<u32>> {
        Ok(link_name(&self.pci_dir(pci).join("iommu_group"))?.and_then(|n| n.parse().ok()))
    }

    /// The PCI addresses in IOMMU group `group`.
    pub fn iommu_group_devices(&self, group: u32) -> Result<Vec<String>> {
        list(&self.root().join(format!("kernel/iommu_groups/{group}/devices")))
    }

    /// Whether the kernel has set up an IOMMU: it then has at least one IOMMU group.
    pub fn iommu_present(&self) -> Result<bool> {
        Ok(!list(&self.root().join("kernel/iommu_groups"))?.is_empty())
    }

    /// Whether vfio's unsafe no-IOMMU mode is on (devices usable without an
    /// IOMMU, with no protection from their DMA).
    pub fn vfio_noiommu(&self) -> Result<bool> {
        let p = self.root().join("module/vfio/parameters/enable_unsafe_noiommu_mode");
        Ok(read(&p)?.is_some_and(|v| v == "Y" || v == "1"))
    }

    /// The hugepages of every size the kernel offers.
    pub fn hugepages(&self) -> Result<Vec<Hugepages>> {
        let dir = self.root().join("kernel/mm/hugepages");
        let mut out = Vec::new();
        for name in list(&dir)? {
            let Some(size_kb) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let count = |f: &str| -> Result<u64> {
                let p = dir.join(&name).join(f);
                Ok(read(&p)?.and_then(|v| v.parse().ok()).unwrap_or(0))
            };
            out.push(Hugepages {
                size_kb,
                total: count("nr_hugepages")?,
                free: count("free_hugepages")?,
            });
        }
        Ok(out)
    }

    /// Binds PCI device `pci` to `driver`, whatever holds it now: the override
    /// first (so that no other driver grabs it between unbind and probe), then
    /// unbind, then probe; checked by reading the bound driver back.
    pub fn bind_pci_driver(&self, pci: &str, driver: &str) -> Result<()> {
        let dev = self.pci_dir(pci);
        write(&dev.join("driver_override"), driver)?;
        self.unbind_pci(pci)?;
        write(&self.root().join("bus/pci/drivers_probe"), pci)?;
        self.expect_driver(pci, Some(driver))
    }

    /// Gives PCI device `pci` back to `driver` (its kernel driver) or, with
    /// `None`, leaves it without one: the override cleared, unbound from
    /// whatever holds it, bound to `driver`; checked by reading it back.
    pub fn restore_pci_driver(&self, pci: &str, driver: Option<&str>) -> Result<()> {
        let dev = self.pci_dir(pci);
        // An empty line clears the override.
        write(&dev.join("driver_override"), "\n")?;
        if self.pci_driver(pci)?.as_deref() == driver {
            return Ok(());
        }
        self.unbind_pci(pci)?;
        if let Some(d) = driver {
            write(&self.root().join("bus/pci/drivers").join(d).join("bind"), pci)?;
        }
        self.expect_driver(pci, driver)
    }

    /// Waits, at most `timeout`, until udev has seen the interfaces of PCI
    /// device `pci` (its database has an entry for each), where udev runs. A
    /// driver bound anew makes new interfaces (`ethN`), which udev renames:
    /// renaming them before udev is done races with it. Best effort: returns
    /// whether udev was done (or not running).
    pub fn settle_udev(&self, pci: &str, timeout: std::time::Duration) -> bool {
        let udev = Path::new("/run/udev");
        if !udev.join("control").exists() {
            return true;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let names = list(&self.pci_dir(pci).join("net")).unwrap_or_default();
            let seen = names.iter().all(|n| {
                let index = read(&self.root().join("class/net").join(n).join("ifindex"));
                matches!(index, Ok(Some(i)) if udev.join(format!("data/n{i}")).exists())
            });
            if seen {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn unbind_pci(&self, pci: &str) -> Result<()> {
        match self.pci_driver(pci)? {
            Some(now) => write(&self.root().join("bus/pci/drivers").join(now).join("unbind"), pci),
            None => Ok(()),
        }
    }

    fn expect_driver(&self, pci: &str, want: Option<&str>) -> Result<()> {
        let now = self.pci_driver(pci)?;
        if now.as_deref() == want {
            return Ok(());
        }
        let name =
            |d: Option<&str>| d.map_or_else(|| "no driver".to_string(), |d| format!("driver {d}"));
        Err(KernelError::io(
            format!("bind {pci} to {}", name(want)),
            std::io::Error::other(format!("it is bound to {} afterwards", name(now.as_deref()))),
        ))
    }
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KernelError::io(format!("read {}", path.display()), e)),
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .map_err(|e| KernelError::io(format!("write {value:?} to {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearhost_testkit::sysfs::FakeSysfs;
    use std::os::unix::fs::symlink;

    /// VF 0000:01:10.0 (driver igbvf, IOMMU group 7 alone) and 0000:01:10.1
    /// (vfio-pci, group 8 shared with 0000:01:10.2), 2 MB and 1 GB hugepages.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::at(t.path());
        for (addr, drv, group) in [
            ("0000:01:10.0", "igbvf", 7),
            ("0000:01:10.1", "vfio-pci", 8),
            ("0000:01:10.2", "igbvf", 8),
        ] {
            let dir = fake.device(addr, None);
            let drivers = t.path().join("bus/pci/drivers").join(drv);
            std::fs::create_dir_all(&drivers).unwrap();
            let _ = symlink(&drivers, dir.join("driver"));
            let g = t.path().join(format!("kernel/iommu_groups/{group}/devices"));
            std::fs::create_dir_all(&g).unwrap();
            symlink(&dir, g.join(addr)).unwrap();
            symlink(g.parent().unwrap(), dir.join("iommu_group")).unwrap();
        }
        for (size, nr, free) in [(2048, 256, 200), (1048576, 0, 0)] {
            let d = t.path().join(format!("kernel/mm/hugepages/hugepages-{size}kB"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("nr_hugepages"), format!("{nr}\n")).unwrap();
            std::fs::write(d.join("free_hugepages"), format!("{free}\n")).unwrap();
        }
        t
    }

    #[test]
    fn reads_drivers_groups_and_hugepages() {
        let t = tree();
        let s = Sysfs::at(t.path());
        assert_eq!(s.pci_driver("0000:01:10.0").unwrap().as_deref(), Some("igbvf"));
        assert_eq!(s.pci_driver("0000:01:10.9").unwrap(), None);
        assert!(s.pci_exists("0000:01:10.1") && !s.pci_exists("0000:01:10.9"));
        assert!(s.pci_driver_loaded("vfio-pci") && !s.pci_driver_loaded("uio_pci_generic"));
        assert_eq!(s.iommu_group("0000:01:10.1").unwrap(), Some(8));
        assert_eq!(s.iommu_group_devices(8).unwrap(), vec!["0000:01:10.1", "0000:01:10.2"]);
        assert!(s.iommu_present().unwrap());
        assert!(!s.vfio_noiommu().unwrap());
        assert_eq!(
            s.hugepages().unwrap(),
            vec![
                Hugepages { size_kb: 1048576, total: 0, free: 0 },
                Hugepages { size_kb: 2048, total: 256, free: 200 },
            ]
        );
    }

    #[test]
    fn a_machine_without_an_iommu_has_no_groups() {
        let t = tempfile::tempdir().unwrap();
        FakeSysfs::at(t.path()).device("0000:01:10.0", None);
        let s = Sysfs::at(t.path());
        assert!(!s.iommu_present().unwrap());
        assert_eq!(s.iommu_group("0000:01:10.0").unwrap(), None);
        assert!(s.hugepages().unwrap().is_empty());
        let p = t.path().join("module/vfio/parameters");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("enable_unsafe_noiommu_mode"), "Y\n").unwrap();
        assert!(s.vfio_noiommu().unwrap());
    }

    #[test]
    fn a_bind_the_kernel_did_not_carry_out_names_what_holds_the_device() {
        // In a plain directory tree the writes land in files and nothing binds:
        // the read-back says so instead of claiming success.
        let t = tree();
        let s = Sysfs::at(t.path());
        std::fs::write(t.path().join("bus/pci/drivers/igbvf/unbind"), "").unwrap();
        let e = s.bind_pci_driver("0000:01:10.0", "vfio-pci").unwrap_err().to_string();
        assert!(
            e.contains("bind 0000:01:10.0 to driver vfio-pci")
                && e.contains("driver igbvf afterwards"),
            "{e}"
        );
        let over = std::fs::read_to_string(s.pci_dir("0000:01:10.0").join("driver_override"));
        assert_eq!(over.unwrap(), "vfio-pci");
    }
}
