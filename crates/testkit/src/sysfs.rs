//! The one fake sysfs tree of the test suites (handed to nearhost as
//! `NEARHOST_SYSFS_ROOT`, or to `Sysfs::at` in unit tests), laid out as the
//! kernel lays out /sys:
//!
//! - `devices/pci0000:00/ADDR/` for each PCI device, with `net/IFNAME/` for
//!   its interface (and `net/IFNAME/device` pointing back);
//! - `bus/pci/devices/ADDR` and `class/net/IFNAME` linking to them;
//! - on an SR-IOV PF: `sriov_totalvfs`, `sriov_numvfs`, `virtfnN` -> the VF,
//!   and on each VF `physfn` -> the PF.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A fake sysfs under `root` (usually a temporary directory).
pub struct FakeSysfs {
    root: PathBuf,
}

/// `0000:BB:00.0` for a PF, `0000:BB:DD.0` (DD = 0x10 + i) for its VF i.
pub fn pci_address(bus: u8, vf: Option<usize>) -> String {
    match vf {
        None => format!("0000:{bus:02x}:00.0"),
        Some(i) => format!("0000:{bus:02x}:{:02x}.0", 0x10 + i),
    }
}

impl FakeSysfs {
    pub fn at(root: &Path) -> FakeSysfs {
        FakeSysfs { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of PCI device `addr`.
    pub fn pci(&self, addr: &str) -> PathBuf {
        self.root.join("devices/pci0000:00").join(addr)
    }

    /// PCI device `addr`, with network interface `ifname` when given (a VF
    /// bound to vfio-pci has none), linked from `bus/pci/devices` and
    /// `class/net`. Returns its directory.
    pub fn device(&self, addr: &str, ifname: Option<&str>) -> PathBuf {
        let dir = self.pci(addr);
        std::fs::create_dir_all(&dir).unwrap();
        self.link(
            &format!("../../../devices/pci0000:00/{addr}"),
            &self.root.join("bus/pci/devices").join(addr),
        );
        if let Some(ifname) = ifname {
            self.set_netdev(addr, ifname);
        }
        dir
    }

    /// Makes `pf` (a device already made) an SR-IOV PF that supports `total`
    /// VFs and has `vfs` (their PCI addresses, devices already made) enabled.
    pub fn sriov(&self, pf: &str, total: u32, vfs: &[&str]) {
        let pf_dir = self.pci(pf);
        std::fs::write(pf_dir.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
        std::fs::write(pf_dir.join("sriov_numvfs"), format!("{}\n", vfs.len())).unwrap();
        for (i, vf) in vfs.iter().enumerate() {
            self.link(&format!("../{vf}"), &pf_dir.join(format!("virtfn{i}")));
            self.link(&format!("../{pf}"), &self.pci(vf).join("physfn"));
        }
    }

    /// Device `addr`'s interface is now `ifname` (as after the kernel renamed
    /// it or a driver was bound): its `net/` holds only that name, and
    /// `class/net/IFNAME` points at it.
    pub fn set_netdev(&self, addr: &str, ifname: &str) {
        let net = self.pci(addr).join("net");
        let _ = std::fs::remove_dir_all(&net);
        std::fs::create_dir_all(net.join(ifname)).unwrap();
        self.link(&format!("../../../{addr}"), &net.join(ifname).join("device"));
        self.link(
            &format!("../../devices/pci0000:00/{addr}/net/{ifname}"),
            &self.root.join("class/net").join(ifname),
        );
    }

    /// An interface with no PCI device behind it (a veth, a bridge).
    pub fn virtual_netdev(&self, ifname: &str) {
        std::fs::create_dir_all(self.root.join("class/net").join(ifname)).unwrap();
    }

    fn link(&self, target: &str, at: &Path) {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(at);
        symlink(target, at).unwrap();
    }
}
