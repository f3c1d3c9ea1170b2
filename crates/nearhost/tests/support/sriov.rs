//! Stand-ins for SR-IOV hardware: a fake sysfs tree (handed to the plugin as
//! NEARHOST_SYSFS_ROOT) laid out as the kernel lays out /sys, whose PF and VF
//! entries name **real** veth devices in the test's host namespace. Claiming,
//! moving, renaming, addressing and restoring are then real kernel operations;
//! only the PF-side VF settings (IFLA_VF_*) are not, as a veth PF refuses them.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{Call, Netns};

/// A host namespace whose VFs are veth ends; their other ends sit on bridge
/// `br0` of a "switch" namespace holding 198.18.NET.1/24 (the gateway).
pub struct Wire {
    pub host: Netns,
    pub sw: Netns,
    pub sysfs: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub net: u8,
}

impl Wire {
    pub fn new(net: u8) -> Wire {
        let (host, sw) = (Netns::new("h"), Netns::new("s"));
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.ip(&["link", "set", "br0", "up"]);
        sw.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", "br0"]);
        let tmp = || tempfile::tempdir().expect("tempdir");
        Wire { host, sw, sysfs: tmp(), data: tmp(), net }
    }

    pub fn sysfs_root(&self) -> String {
        self.sysfs.path().display().to_string()
    }

    /// A veth end `name` in the host whose peer `peer` is on the switch's bridge.
    pub fn cable(&self, name: &str, peer: &str) {
        self.host.ip(&["link", "add", name, "type", "veth", "peer", "name", peer, "netns", &self.sw.name]);
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
        let tree = Tree(self.sysfs.path());
        let pf_pci = tree.device(&pci_address(bus, None), pf);
        std::fs::write(pf_pci.join("sriov_totalvfs"), "64\n").unwrap();
        std::fs::write(pf_pci.join("sriov_numvfs"), format!("{n}\n")).unwrap();
        for (i, name) in names.iter().enumerate() {
            let vf = pci_address(bus, Some(i));
            tree.device(&vf, name);
            symlink(format!("../{vf}"), pf_pci.join(format!("virtfn{i}"))).unwrap();
            symlink(format!("../{}", pci_address(bus, None)), tree.pci(&vf).join("physfn")).unwrap();
        }
        names
    }

    /// A PCI device `addr` whose interface is `ifname` (a NIC for hostdev).
    pub fn pci_device(&self, addr: &str, ifname: &str) {
        Tree(self.sysfs.path()).device(addr, ifname);
    }

    /// What sysfs would show after the kernel renamed a device's interface.
    pub fn set_netdev(&self, pci: &str, name: &str) {
        let net = Tree(self.sysfs.path()).pci(pci).join("net");
        std::fs::remove_dir_all(&net).unwrap();
        std::fs::create_dir_all(net.join(name)).unwrap();
    }

    /// An sriov network config with embedded IPAM on 198.18.NET.0/24.
    pub fn conf(&self, name: &str, datapath: &str, extra: Value) -> Value {
        let ipam = json!({"type": "nearhost", "dataDir": self.data.path(),
            "ranges": [[{"subnet": format!("198.18.{}.0/24", self.net), "rangeStart": format!("198.18.{}.100", self.net),
                         "gateway": format!("198.18.{}.1", self.net)}]],
            "routes": [{"dst": "0.0.0.0/0"}]});
        super::netconf("1.1.0", name, datapath, ipam, extra)
    }

    /// A CNI call from the host namespace that sees the fake sysfs.
    pub fn call(&self, command: &str, id: &str, netns: &str) -> Call<'_> {
        Call::new(&self.host, command, id, netns, "eth0").env("NEARHOST_SYSFS_ROOT", &self.sysfs_root())
    }

    pub fn state_dir(&self, network: &str) -> PathBuf {
        self.data.path().join(network)
    }

    /// The VF claims of `network`: PCI address → claim.
    pub fn claims(&self, network: &str) -> serde_json::Map<String, Value> {
        match std::fs::read_to_string(self.state_dir(network).join("sriov-vfs.json")) {
            Ok(text) => serde_json::from_str(&text).expect("claims file is JSON"),
            Err(_) => serde_json::Map::new(),
        }
    }

    pub fn reservations(&self, network: &str) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.state_dir(network).join("state.json")) else { return Vec::new() };
        let v: Value = serde_json::from_str(&text).expect("state.json");
        v["reservations"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
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

/// `0000:BB:00.0` for a PF, `0000:BB:DD.0` (DD = 0x10 + i) for its VF i.
pub fn pci_address(bus: u8, vf: Option<usize>) -> String {
    match vf {
        None => format!("0000:{bus:02x}:00.0"),
        Some(i) => format!("0000:{bus:02x}:{:02x}.0", 0x10 + i),
    }
}

struct Tree<'a>(&'a Path);

impl Tree<'_> {
    fn pci(&self, addr: &str) -> PathBuf {
        self.0.join("devices/pci0000:00").join(addr)
    }

    /// A PCI device directory with interface `ifname`, linked from
    /// `class/net/IFNAME` and `bus/pci/devices/ADDR` as in /sys.
    fn device(&self, addr: &str, ifname: &str) -> PathBuf {
        let dir = self.pci(addr);
        let net = dir.join("net").join(ifname);
        std::fs::create_dir_all(&net).unwrap();
        symlink("../../../".to_string() + addr, net.join("device")).unwrap();
        for d in ["class/net", "bus/pci/devices"] {
            std::fs::create_dir_all(self.0.join(d)).unwrap();
        }
        symlink(format!("../../devices/pci0000:00/{addr}/net/{ifname}"), self.0.join("class/net").join(ifname)).unwrap();
        symlink(format!("../../../devices/pci0000:00/{addr}"), self.0.join("bus/pci/devices").join(addr)).unwrap();
        dir
    }
}
