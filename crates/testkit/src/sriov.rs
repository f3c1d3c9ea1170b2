//! Stand-ins for SR-IOV hardware: a fake sysfs tree (handed to the plugin as
//! NEARHOST_SYSFS_ROOT) laid out as the kernel lays out /sys, whose PF and VF
//! entries name **real** veth devices in the test's host namespace. Claiming,
//! moving, renaming, addressing and restoring are then real kernel operations;
//! only the PF-side VF settings (IFLA_VF_*) are not, as a veth PF refuses them.

use std::path::PathBuf;

use serde_json::{json, Value};

pub use crate::sysfs::pci_address;
use crate::sysfs::FakeSysfs;
use crate::{Call, Netns};

/// A host namespace whose VFs are veth ends; their other ends sit on bridge
/// `br0` of a "switch" namespace holding 198.18.NET.1/24 (the gateway).
pub struct Wire {
    pub host: Netns,
    pub sw: Netns,
    pub sysfs: tempfile::TempDir,
    pub data: tempfile::TempDir,
    /// The node-wide device claims (NEARHOST_CLAIMS_DIR).
    pub claims: tempfile::TempDir,
    pub net: u8,
}

impl Wire {
    pub fn new(net: u8) -> Wire {
        let (host, sw) = (Netns::new("h"), Netns::new("s"));
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        sw.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", "br0"]);
        let tmp = || tempfile::tempdir().expect("tempdir");
        Wire { host, sw, sysfs: tmp(), data: tmp(), claims: tmp(), net }
    }

    pub fn sysfs_root(&self) -> String {
        self.sysfs.path().display().to_string()
    }

    /// A veth end `name` in the host whose peer `peer` is on the switch's bridge.
    pub fn cable(&self, name: &str, peer: &str) {
        self.host.ip(&[
            "link", "add", name, "type", "veth", "peer", "name", peer, "netns", &self.sw.name,
        ]);
        self.sw.ip(&["link", "set", peer, "master", "br0"]);
        self.sw.ip(&["link", "set", peer, "up"]);
    }

    /// Adds PF `pf` on PCI bus `bus` with `n` VFs named `{pf}v{i}`; returns their names.
    pub fn pf(&self, pf: &str, bus: u8, n: usize) -> Vec<String> {
        self.cable(pf, &format!("{pf}s"));
        self.host.ip(&["link", "set", pf, "up"]);
        let names: Vec<String> = (0..n).map(|i| format!("{pf}v{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            self.cable(name, &format!("{pf}s{i}"));
        }
        let tree = FakeSysfs::at(self.sysfs.path());
        let pf_pci = pci_address(bus, None);
        tree.device(&pf_pci, Some(pf));
        let vfs: Vec<String> = (0..n).map(|i| pci_address(bus, Some(i))).collect();
        for (vf, name) in vfs.iter().zip(&names) {
            tree.device(vf, Some(name));
        }
        tree.sriov(&pf_pci, 64, &vfs.iter().map(String::as_str).collect::<Vec<_>>());
        names
    }

    /// A PCI device `addr` whose interface is `ifname` (a NIC for hostdev).
    pub fn pci_device(&self, addr: &str, ifname: &str) {
        FakeSysfs::at(self.sysfs.path()).device(addr, Some(ifname));
    }

    /// What sysfs would show after the kernel renamed a device's interface.
    pub fn set_netdev(&self, pci: &str, name: &str) {
        FakeSysfs::at(self.sysfs.path()).set_netdev(pci, name);
    }

    /// An sriov network config with embedded IPAM on 198.18.NET.0/24.
    pub fn conf(&self, name: &str, datapath: &str, extra: Value) -> Value {
        let ipam = json!({"type": "nearhost", "dataDir": self.data.path(),
            "ranges": [[{"subnet": format!("198.18.{}.0/24", self.net), "rangeStart": format!("198.18.{}.100", self.net),
                         "gateway": format!("198.18.{}.1", self.net)}]],
            "routes": [{"dst": "0.0.0.0/0"}]});
        crate::netconf("1.1.0", name, datapath, ipam, extra)
    }

    /// A CNI call from the host namespace that sees the fake sysfs and keeps
    /// its device claims in this wire's directory.
    pub fn call(&self, command: &str, id: &str, netns: &str) -> Call<'_> {
        Call::new(&self.host, command, id, netns, "eth0")
            .env("NEARHOST_SYSFS_ROOT", &self.sysfs_root())
            .env("NEARHOST_CLAIMS_DIR", &self.claims_dir().display().to_string())
    }

    pub fn state_dir(&self, network: &str) -> PathBuf {
        self.data.path().join(network)
    }

    pub fn claims_dir(&self) -> PathBuf {
        self.claims.path().to_path_buf()
    }

    /// The VF claims of `network`: PCI address → claim.
    pub fn claims(&self, network: &str) -> serde_json::Map<String, Value> {
        self.claims_of("sriov-vfs", network)
    }

    /// The claims of kind `kind` (`sriov-vfs`, `hostdev`) held for `network`.
    pub fn claims_of(&self, kind: &str, network: &str) -> serde_json::Map<String, Value> {
        crate::claims_in(&self.claims_dir(), kind)
            .into_iter()
            .filter(|(_, c)| c["network"] == network)
            .collect()
    }

    pub fn reservations(&self, network: &str) -> Vec<String> {
        crate::reservations_in(self.data.path(), network)
    }

    /// The IPv4 address `.last` of the test subnet.
    pub fn v4(&self, last: u8) -> String {
        format!("198.18.{}.{last}", self.net)
    }
}

/// `conf` with the ADD's result as `prevResult` (for CHECK and DEL).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
