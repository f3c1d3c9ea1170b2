//! Real NICs for the kernel lab: qemu's emulated Intel 82576 (`-device igb`),
//! driven by the kernel's own igb (PF) and igbvf (VF) drivers. scripts/kernel-lab
//! gives its guest three of them on their own PCIe root ports, all on one qemu
//! hub (one "switch"): the first two are the SR-IOV PFs, the third a whole NIC
//! for `hostdev` and a plain peer. [`Nics::take`] finds them by driver, enables
//! [`VFS_PER_PF`] VFs on each PF, resets every VF's PF settings, and hands a
//! test the names; it fails (never skips) when the NICs are missing.
//!
//! The plugin runs in the guest's own (initial) namespace, where the NICs are:
//! it is attached under /run/netns as [`Nics::host`] so CNI calls run there as
//! in every other suite. One test at a time holds the NICs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{eventually, must, Call, Netns};

/// VFs enabled on each PF: enough for two bonded containers and a peer, few
/// enough that "every VF taken" is quick to reach.
pub const VFS_PER_PF: usize = 3;

/// The igb NICs the lab gives its guest.
const NICS: usize = 3;

static SERIAL: Mutex<()> = Mutex::new(());

/// One VF of a PF, as sysfs shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub index: u32,
    pub pci: String,
    /// Its interface in this namespace (`None` while it is in a container).
    pub netdev: Option<String>,
}

/// The guest's igb NICs, held by one test at a time.
pub struct Nics {
    /// The guest's initial namespace (where the NICs are), attached by name
    /// (dropping it only removes the name: the namespace is PID 1's).
    pub host: Netns,
    /// The two SR-IOV PFs.
    pub pfs: [String; 2],
    /// The third NIC: no VFs; moved whole by `hostdev`.
    pub nic: String,
    pub nic_pci: String,
    pub data: tempfile::TempDir,
    pub claims: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

fn sys_net() -> PathBuf {
    PathBuf::from("/sys/class/net")
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn link_target_name(path: &Path) -> Option<String> {
    std::fs::read_link(path).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The interfaces bound to the igb driver, by PCI address.
fn igb_nics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(sys_net()).expect("/sys/class/net").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let dev = e.path().join("device");
        if link_target_name(&dev.join("driver")).as_deref() == Some("igb") {
            if let Some(pci) = link_target_name(&dev) {
                out.push((pci, name));
            }
        }
    }
    out.sort();
    out
}

impl Nics {
    /// The NICs, with [`VFS_PER_PF`] VFs enabled on both PFs, every VF's PF
    /// settings reset and its interface in this namespace. Panics with the
    /// reason when the guest does not have them.
    pub fn take() -> Nics {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let found = igb_nics();
        assert!(
            found.len() >= NICS,
            "this kernel lab guest has {} igb NIC(s) ({found:?}); scripts/kernel-lab gives it {NICS} (qemu -device igb). Run these tests there",
            found.len()
        );
        let pfs = [found[0].1.clone(), found[1].1.clone()];
        let (nic_pci, nic) = found[2].clone();
        let host = Netns { name: format!("nhtroot{}", std::process::id()) };
        must("ip", &["netns", "attach", &host.name, "1"]);
        for pf in &pfs {
            enable_vfs(pf);
            must("ip", &["link", "set", pf, "up"]);
        }
        must("ip", &["link", "set", &nic, "up"]);
        let nics = Nics {
            host,
            pfs,
            nic,
            nic_pci,
            data: tempfile::tempdir().expect("tempdir"),
            claims: tempfile::tempdir().expect("tempdir"),
            _serial: serial,
        };
        for pf in &nics.pfs {
            for vf in 0..VFS_PER_PF {
                let vf = vf.to_string();
                must(
                    "ip",
                    &[
                        "link", "set", pf, "vf", &vf, "vlan", "0", "spoofchk", "on", "trust",
                        "off", "max_tx_rate", "0",
                    ],
                );
            }
            for vf in nics.vfs(pf) {
                assert!(
                    vf.netdev.is_some(),
                    "VF {} of {pf} ({}) has no interface in the guest's namespace: a test before left it elsewhere",
                    vf.index,
                    vf.pci
                );
            }
        }
        nics
    }

    /// The enabled VFs of `pf`.
    pub fn vfs(&self, pf: &str) -> Vec<Vf> {
        let dev = sys_net().join(pf).join("device");
        let mut out: Vec<Vf> = (0..VFS_PER_PF as u32)
            .filter_map(|index| {
                let link = dev.join(format!("virtfn{index}"));
                let pci = link_target_name(&link)?;
                let netdev = std::fs::read_dir(link.join("net"))
                    .ok()
                    .and_then(|mut d| d.next())
                    .and_then(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned());
                Some(Vf { index, pci, netdev })
            })
            .collect();
        out.sort_by_key(|v| v.index);
        out
    }

    /// What the PF reports of VF `vf` (`ip -j link show PF`'s `vfinfo_list` entry).
    pub fn vf_info(&self, pf: &str, vf: u32) -> Value {
        let out = must("ip", &["-j", "link", "show", "dev", pf]);
        let v: Value = serde_json::from_str(&out).expect("ip -j link");
        v[0]["vfinfo_list"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["vf"] == vf).cloned())
            .unwrap_or_else(|| panic!("{pf} reports no VF {vf}: {out}"))
    }

    /// The PF settings of every VF of both PFs (to compare before and after).
    pub fn all_vf_info(&self) -> Vec<Value> {
        self.pfs
            .iter()
            .flat_map(|pf| (0..VFS_PER_PF as u32).map(move |vf| (pf, vf)))
            .map(|(pf, vf)| self.vf_info(pf, vf))
            .collect()
    }

    /// A network config with embedded IPAM on 198.18.NET.0/24 (from .100).
    pub fn conf(&self, name: &str, datapath: &str, net: u8, extra: Value) -> Value {
        let ipam = json!({"type": "nearhost", "dataDir": self.data.path(),
            "ranges": [[{"subnet": format!("198.18.{net}.0/24"), "rangeStart": format!("198.18.{net}.100")}]]});
        crate::netconf("1.1.0", name, datapath, ipam, extra)
    }

    /// A CNI call from the guest's namespace, keeping device claims in this
    /// test's directory.
    pub fn call(&self, command: &str, id: &str, netns: &str) -> Call<'_> {
        Call::new(&self.host, command, id, netns, "eth0")
            .env("NEARHOST_CLAIMS_DIR", &self.claims.path().display().to_string())
    }

    /// The claims file of kind `kind` (`sriov-vfs`, `hostdev`): key → claim.
    pub fn claims(&self, kind: &str) -> serde_json::Map<String, Value> {
        crate::claims_in(self.claims.path(), kind)
    }

    /// The addresses IPAM holds for `network`.
    pub fn reservations(&self, network: &str) -> Vec<String> {
        crate::reservations_in(self.data.path(), network)
    }

    /// `ip -j -d link show NAME` in the guest's namespace.
    pub fn link(&self, name: &str) -> Option<Value> {
        self.host.link(name)
    }
}

/// Sets `sriov_numvfs` of `pf` to [`VFS_PER_PF`] and waits for igbvf to give
/// each VF an interface.
fn enable_vfs(pf: &str) {
    let path = sys_net().join(pf).join("device/sriov_numvfs");
    let want = VFS_PER_PF.to_string();
    if read(&path).as_deref() != Some(want.as_str()) {
        std::fs::write(&path, "0").unwrap_or_else(|e| panic!("write 0 to {}: {e}", path.display()));
        std::fs::write(&path, &want)
            .unwrap_or_else(|e| panic!("write {want} to {}: {e}", path.display()));
    }
    let dev = sys_net().join(pf).join("device");
    let ready = || {
        (0..VFS_PER_PF).all(|i| {
            std::fs::read_dir(dev.join(format!("virtfn{i}/net")))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        })
    };
    assert!(
        eventually(Duration::from_secs(30), ready),
        "the VFs of {pf} got no interfaces within 30 s (is igbvf loadable?)"
    );
}
