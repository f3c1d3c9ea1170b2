//! sysfs reads: which PCI device backs a network interface, a PF's SR-IOV
//! virtual functions, and the interfaces of a PCI device.
//!
//! The root is `/sys`, or the directory named by `NEARHOST_SYSFS_ROOT`, so tests
//! can build a tree laid out as the kernel lays out `/sys`:
//!
//! ```text
//! class/net/IF/device          -> the PCI directory of IF's device
//! PCI/sriov_totalvfs, sriov_numvfs
//! PCI/virtfnN                  -> the PCI directory of VF N
//! PCI/net/NAME                 the device's interface(s)
//! bus/pci/devices/ADDR         -> the PCI directory of ADDR
//! ```
//!
//! Interface directories in sysfs are tagged with their network namespace: a
//! device moved into a container vanishes from the host's `PCI/net/`.

use std::path::{Path, PathBuf};

use crate::error::{KernelError, Result};

/// The environment variable that replaces `/sys`.
pub const ROOT_ENV: &str = "NEARHOST_SYSFS_ROOT";

/// One virtual function of a PF as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtFn {
    /// N of `virtfnN`: the VF number the PF's `IFLA_VF_*` settings take.
    pub index: u32,
    /// The VF's PCI address (`0000:3b:02.1`).
    pub pci: String,
    /// Its interfaces visible here (none when it is in another namespace or
    /// bound to a non-network driver such as vfio-pci).
    pub netdevs: Vec<String>,
    /// The driver bound to it (`igbvf`, `vfio-pci`); `None` without one.
    pub driver: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// `/sys`, unless `NEARHOST_SYSFS_ROOT` names another root.
    pub fn from_env() -> Self {
        match std::env::var_os(ROOT_ENV) {
            Some(root) if !root.is_empty() => Sysfs::at(root),
            _ => Sysfs::at("/sys"),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `class/net/IF/device`: the PCI directory of an interface's device.
    fn netdev_device(&self, ifname: &str) -> PathBuf {
        self.root.join("class/net").join(ifname).join("device")
    }

    /// The PCI directory of a PCI address.
    pub fn pci_dir(&self, pci: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(pci)
    }

    /// The PCI address behind an interface; `None` for virtual interfaces and
    /// interfaces not visible here.
    pub fn netdev_pci_address(&self, ifname: &str) -> Result<Option<String>> {
        match std::fs::canonicalize(self.netdev_device(ifname)) {
            Ok(p) => Ok(p.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(KernelError::io(format!("resolve {}", self.netdev_device(ifname).display()), e))
            }
        }
    }

    /// The driver bound to an interface's device (`igb`, `igbvf`, …); `None`
    /// for virtual interfaces and devices without a driver.
    pub fn netdev_driver(&self, ifname: &str) -> Result<Option<String>> {
        link_name(&self.netdev_device(ifname).join("driver"))
    }

    /// The interfaces of a PCI device visible in this sysfs.
    pub fn pci_netdevs(&self, pci: &str) -> Result<Vec<String>> {
        list_dir(&self.pci_dir(pci).join("net"))
    }

    /// `sriov_totalvfs` of a PF; `None` when the device is not SR-IOV capable.
    pub fn sriov_totalvfs(&self, pf: &str) -> Result<Option<u32>> {
        read_u32(&self.netdev_device(pf).join("sriov_totalvfs"))
    }

    /// `sriov_numvfs` of a PF (the VFs enabled now); `None` when not SR-IOV capable.
    pub fn sriov_numvfs(&self, pf: &str) -> Result<Option<u32>> {
        read_u32(&self.netdev_device(pf).join("sriov_numvfs"))
    }

    /// The PF's enabled VFs, by VF number.
    pub fn virtfns(&self, pf: &str) -> Result<Vec<VirtFn>> {
        let dev = self.netdev_device(pf);
        let mut out = Vec::new();
        for name in list_dir(&dev)? {
            let Some(index) = name.strip_prefix("virtfn").and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let link = dev.join(&name);
            let target = std::fs::read_link(&link)
                .map_err(|e| KernelError::io(format!("read link {}", link.display()), e))?;
            let Some(pci) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let driver = self.pci_driver(&pci)?;
            out.push(VirtFn { index, pci, netdevs: list_dir(&link.join("net"))?, driver });
        }
        out.sort_by_key(|v| v.index);
        Ok(out)
    }

    /// Every interface name under `class/net`: its entries that are (links
    /// to) directories. The bonding driver puts a file there too,
    /// `bonding_masters`, which names no interface.
    pub fn net_devices(&self) -> Result<Vec<String>> {
        let dir = self.root.join("class/net");
        Ok(list_dir(&dir)?.into_iter().filter(|n| dir.join(n).is_dir()).collect())
    }
}

/// The last component of a symlink's target (a driver's or device's name);
/// `None` when there is no such link.
pub(crate) fn link_name(path: &Path) -> Result<Option<String>> {
    match std::fs::read_link(path) {
        Ok(p) => Ok(p.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KernelError::io(format!("read link {}", path.display()), e)),
    }
}

/// Sorted entry names of a directory; a missing directory is empty.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KernelError::io(format!("read {}", dir.display()), e)),
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    Ok(names)
}

fn read_u32(path: &Path) -> Result<Option<u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KernelError::io(format!("read {}", path.display()), e)),
    };
    text.trim().parse().map(Some).map_err(|_| {
        let msg = format!("{:?} is not a number", text.trim());
        KernelError::io(
            format!("read {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearhost_testkit::sysfs::FakeSysfs;

    /// A PF `pf0` at 0000:01:00.0 with VFs 0 (netdev `vf0`) and 1 (no netdev).
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::at(t.path());
        fake.device("0000:01:00.0", Some("pf0"));
        fake.device("0000:01:00.1", Some("vf0"));
        fake.device("0000:01:00.2", None);
        fake.sriov("0000:01:00.0", 8, &["0000:01:00.1", "0000:01:00.2"]);
        t
    }

    #[test]
    fn reads_a_pf_and_its_vfs() {
        let t = tree();
        let s = Sysfs::at(t.path());
        assert_eq!(s.sriov_totalvfs("pf0").unwrap(), Some(8));
        assert_eq!(s.sriov_numvfs("pf0").unwrap(), Some(2));
        assert_eq!(s.netdev_pci_address("pf0").unwrap().as_deref(), Some("0000:01:00.0"));
        let vfs = s.virtfns("pf0").unwrap();
        assert_eq!(
            vfs,
            vec![
                VirtFn {
                    index: 0,
                    pci: "0000:01:00.1".into(),
                    netdevs: vec!["vf0".into()],
                    driver: None
                },
                VirtFn { index: 1, pci: "0000:01:00.2".into(), netdevs: vec![], driver: None },
            ]
        );
        assert_eq!(s.pci_netdevs("0000:01:00.1").unwrap(), vec!["vf0"]);
        assert_eq!(s.net_devices().unwrap(), vec!["pf0", "vf0"]);
        // With the bonding driver loaded, class/net has a file that names no
        // interface (found by the VF inventory in the kernel lab).
        std::fs::write(t.path().join("class/net/bonding_masters"), "bond0\n").unwrap();
        assert_eq!(s.net_devices().unwrap(), vec!["pf0", "vf0"]);
    }

    #[test]
    fn absent_things_are_none_or_empty() {
        let t = tree();
        let s = Sysfs::at(t.path());
        assert_eq!(s.sriov_totalvfs("lo").unwrap(), None);
        assert_eq!(s.netdev_pci_address("lo").unwrap(), None);
        assert!(s.virtfns("lo").unwrap().is_empty());
        assert!(s.pci_netdevs("0000:99:00.0").unwrap().is_empty());
    }

    #[test]
    fn garbage_in_a_counter_names_the_file() {
        let t = tree();
        std::fs::write(t.path().join("devices/pci0000:00/0000:01:00.0/sriov_numvfs"), "many")
            .unwrap();
        let e = Sysfs::at(t.path()).sriov_numvfs("pf0").unwrap_err().to_string();
        assert!(e.contains("sriov_numvfs") && e.contains("\"many\""), "{e}");
    }
}
