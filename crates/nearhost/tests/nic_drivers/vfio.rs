//! Kernel bypass on igb: a VF that nearhost hands to vfio-pci (its VLAN and
//! MAC set on the PF by nearhost) is driven by DPDK's `dpdk-testpmd` — its igb
//! VF poll-mode driver, from the container's namespace — and answers pings
//! from a container holding a kernel-driven VF of the other PF on the same
//! VLAN; both sides count the packets. DEL gives the VF back to igbvf with its
//! settings. A whole NIC goes the same way through `hostdev`. All of it under
//! qemu's emulation: the 82576, its VFs and the IOMMU (intel-iommu) are
//! emulated; the drivers (igb, igbvf, vfio-pci, DPDK's PMD) are the real ones.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::nics::Nics;
use crate::support::*;
use crate::*;

const HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const DEVINFO: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// The guest's 2 MB hugepages, set for the test and put back after it.
struct Hugepages(String);

impl Hugepages {
    fn set(n: u32) -> Hugepages {
        let before = std::fs::read_to_string(HUGEPAGES).expect(HUGEPAGES).trim().to_string();
        std::fs::write(HUGEPAGES, n.to_string()).expect(HUGEPAGES);
        Hugepages(before)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = std::fs::write(HUGEPAGES, &self.0);
    }
}

/// A hugetlbfs of its own for DPDK (the guest mounts none at /dev/hugepages),
/// unmounted on drop.
struct HugeDir(tempfile::TempDir);

impl HugeDir {
    fn mount() -> HugeDir {
        let dir = tempfile::tempdir().expect("tempdir");
        must("mount", &["-t", "hugetlbfs", "nodev", &dir.path().display().to_string()]);
        HugeDir(dir)
    }

    fn path(&self) -> String {
        self.0.path().display().to_string()
    }
}

impl Drop for HugeDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// Runs DEL for what ADD made if the test ends early (a failed assertion), so
/// that the VFs and NICs are back for the tests after it.
struct DelOnDrop<'a> {
    n: &'a Nics,
    dels: Vec<(String, String, Value)>,
}

impl DelOnDrop<'_> {
    fn push(&mut self, id: &str, ns: &Netns, conf: &Value) {
        self.dels.push((id.into(), ns.path(), conf.clone()));
    }
}

impl Drop for DelOnDrop<'_> {
    fn drop(&mut self) {
        for (id, ns, conf) in self.dels.drain(..).rev() {
            let _ = self.n.call("DEL", &id, &ns).conf(&conf);
        }
    }
}

fn driver_of(pci: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/bus/pci/devices/{pci}/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn iommu_group(pci: &str) -> String {
    std::fs::read_link(format!("/sys/bus/pci/devices/{pci}/iommu_group"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| panic!("{pci} has no IOMMU group: is the lab's intel-iommu missing?"))
}

fn device_info(network: &str, id: &str) -> std::path::PathBuf {
    Path::new(DEVINFO).join(format!("{network}-{id}-eth0-device-info.json"))
}

/// vfio-pci unloaded, so that the refusal can be seen (it is a module in
/// Debian's kernels).
fn unload_vfio_pci() {
    let _ = std::process::Command::new("modprobe").args(["-r", "vfio-pci"]).status();
    assert!(
        !Path::new("/sys/bus/pci/drivers/vfio-pci").exists(),
        "vfio-pci is still loaded (in use?)"
    );
}

/// `dpdk-testpmd` in `icmpecho` mode on `pci` inside `ns`: started, waited
/// for until it forwards, and stopped with SIGINT by [`Testpmd::stop`], which
/// returns its port 0 (RX, TX) packet counts.
struct Testpmd {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Testpmd {
    fn start(ns: &Netns, pci: &str, huge: &HugeDir) -> Testpmd {
        let mut child = ns.spawn(&[
            "dpdk-testpmd",
            "-l",
            "0-1",
            "-n",
            "1",
            "-a",
            pci,
            "--file-prefix",
            "nhvfio",
            "--huge-dir",
            &huge.path(),
            "--",
            "--forward-mode=icmpecho",
            "--stats-period=1",
        ]);
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let mut t = Testpmd { child, out };
        let started = Instant::now();
        while !t.text().contains("icmpecho packet forwarding") {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!("dpdk-testpmd exited ({status}) before forwarding:\n{}", t.text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "dpdk-testpmd did not start forwarding within 180 s:\n{}",
                t.text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        t
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stop(mut self) -> (u64, u64, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("dpdk-testpmd did not stop within 60 s of SIGINT:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(300));
        let text = self.text();
        let block = text
            .rsplit("Forward statistics for port 0")
            .next()
            .filter(|_| text.contains("Forward statistics for port 0"))
            .unwrap_or_else(|| panic!("no final statistics from dpdk-testpmd:\n{text}"));
        let count = |key: &str| -> u64 {
            let at = block.find(key).unwrap_or_else(|| panic!("no {key} in:\n{block}"));
            block[at + key.len()..].split_whitespace().next().unwrap().parse().unwrap()
        };
        (count("RX-packets:"), count("TX-packets:"), text)
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ping -c COUNT` from `ns` to `ip`: the replies received.
fn pings(ns: &Netns, ip: &str, count: u32) -> u32 {
    let out = ns.exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", ip]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split(", ").find_map(|p| p.strip_suffix(" received")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary:\n{text}"))
}

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs and IOMMU (scripts/kernel-lab)"]
fn a_vf_handed_to_vfio_pci_answers_pings_through_dpdk_and_del_gives_it_back() {
    let n = Nics::take();
    let [a, b] = n.pfs.clone();
    let (before, vfs_before) = (summaries(&n), host_vfs(&n));
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = n.conf(
        "dp",
        "sriov",
        71,
        json!({"pf": a, "vlan": 100, "mac": "02:18:71:00:00:01", "deviceDriver": "vfio-pci"}),
    );

    // What is missing is named, and nothing changes.
    let unchanged = |after: &str| {
        assert_eq!(summaries(&n), before, "after {after}");
        assert_eq!(host_vfs(&n), vfs_before, "after {after}");
        assert!(n.claims("sriov-vfs").is_empty() && n.reservations("dp").is_empty(), "{after}");
    };
    unload_vfio_pci();
    n.call("ADD", "d1", &c1.path()).conf(&conf).expect_err(
        104,
        "deviceDriver: the vfio-pci driver is not loaded (no /sys/bus/pci/drivers/vfio-pci): modprobe vfio-pci",
    );
    unchanged("the refusal without vfio-pci");
    must("modprobe", &["vfio-pci"]);
    let pages = Hugepages::set(0);
    n.call("ADD", "d1", &c1.path())
        .conf(&conf)
        .expect_err(104, "deviceDriver: no hugepages are reserved");
    unchanged("the refusal without hugepages");
    drop(pages);
    let _pages = Hugepages::set(256);

    let mut cleanup = DelOnDrop { n: &n, dels: Vec::new() };
    let r1 = n.call("ADD", "d1", &c1.path()).conf(&conf).expect_ok();
    cleanup.push("d1", &c1, &conf);
    let pci = pci_in(&r1, "eth0");
    let (pf1, vf1) = vf_of(&n, &pci);
    assert_eq!(pf1, a);
    assert_eq!(driver_of(&pci).as_deref(), Some("vfio-pci"), "nearhost bound {pci} to vfio-pci");
    assert!(c1.link_names().is_empty(), "no interface in the container: {:?}", c1.link_names());
    assert_eq!(result_ip(&r1, 0), "198.18.71.100", "IPAM's address is reported for the app");
    assert_eq!(r1["interfaces"][0]["mac"], "02:18:71:00:00:01");
    assert!(
        summary(&n.vf_info(&a, vf1))
            .starts_with("mac 02:18:71:00:00:01 vlan 100 qos 0 spoofchk on"),
        "the PF applies the VF's settings: {}",
        summary(&n.vf_info(&a, vf1))
    );
    let group = iommu_group(&pci);
    assert!(Path::new(&format!("/dev/vfio/{group}")).exists(), "/dev/vfio/{group}");
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(device_info("dp", "d1")).expect("the device-info file"),
    )
    .unwrap();
    let pf_pci = std::fs::canonicalize(format!("/sys/class/net/{a}/device")).unwrap();
    assert_eq!(
        info,
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci,
               "pf-pci-address": pf_pci.file_name().unwrap().to_string_lossy()}})
    );
    n.call("CHECK", "d1", &c1.path()).conf(&with_prev(&conf, &r1)).expect_ok();

    // The peer: a kernel VF of the other PF on the same VLAN.
    let peer_conf = n.conf("dp", "sriov", 71, json!({"pf": b, "vlan": 100}));
    let r2 = n.call("ADD", "d2", &c2.path()).conf(&peer_conf).expect_ok();
    cleanup.push("d2", &c2, &peer_conf);
    let huge = HugeDir::mount();
    let pmd = Testpmd::start(&c1, &pci, &huge);
    let replies = pings(&c2, "198.18.71.100", 20);
    let (rx, tx, log) = pmd.stop();
    println!("dpdk-testpmd icmpecho on {pci}: {replies}/20 pings answered; port 0 RX {rx} TX {tx}");
    assert!(replies >= 15, "{replies} of 20 pings answered by DPDK:\n{log}");
    assert!(rx >= u64::from(replies) && tx >= u64::from(replies), "RX {rx} TX {tx}:\n{log}");
    let stats = c2.ip(&["-s", "-j", "link", "show", "eth0"]);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let rx_peer = stats[0]["stats64"]["rx"]["packets"].as_u64().unwrap();
    assert!(rx_peer >= u64::from(replies), "the peer VF counted {rx_peer} packets in");

    // CHECK sees a VF taken from vfio-pci behind nearhost's back.
    must("sh", &["-c", &format!("echo {pci} > /sys/bus/pci/drivers/vfio-pci/unbind")]);
    n.call("CHECK", "d1", &c1.path())
        .conf(&with_prev(&conf, &r1))
        .expect_err(106, &format!("{pci} is bound to no driver, not vfio-pci"));
    must("sh", &["-c", &format!("echo {pci} > /sys/bus/pci/drivers_probe")]);
    assert_eq!(driver_of(&pci).as_deref(), Some("vfio-pci"), "driver_override still says vfio-pci");

    cleanup.dels.clear();
    n.call("DEL", "d1", &c1.path()).conf(&with_prev(&conf, &r1)).expect_ok();
    n.call("DEL", "d2", &c2.path()).conf(&with_prev(&peer_conf, &r2)).expect_ok();
    assert_eq!(driver_of(&pci).as_deref(), Some("igbvf"), "DEL gave {pci} back to igbvf");
    assert!(!device_info("dp", "d1").exists(), "DEL removed the device-info file");
    assert_eq!(restored(&n, &before), before, "every VF's PF settings are as before");
    assert_eq!(host_vfs(&n), vfs_before, "every VF is back with its name, MTU and MAC");
    assert!(n.claims("sriov-vfs").is_empty() && n.reservations("dp").is_empty());
    // A second DEL finds nothing to do.
    n.call("DEL", "d1", &c1.path()).conf(&conf).expect_ok();
}

/// A device an operator bound to vfio-pci stays bound after DEL; a whole NIC
/// goes to vfio-pci and back to igb with its name and MTU.
#[test]
#[ignore = "kernel lab: needs the emulated igb NICs and IOMMU (scripts/kernel-lab)"]
fn hostdev_hands_a_whole_nic_to_vfio_pci_and_back() {
    let n = Nics::take();
    let (nic, pci) = (n.nic.clone(), n.nic_pci.clone());
    must("modprobe", &["vfio-pci"]);
    let _pages = Hugepages::set(64);
    must("ip", &["link", "set", &nic, "mtu", "1400"]);
    let view = |name: &str| {
        let l = n.link(name).unwrap_or_else(|| panic!("{name} is not in the host"));
        (l["mtu"].clone(), l["address"].clone(), l["operstate"] != "DOWN")
    };
    let before = view(&nic);
    let c = Netns::new("c");
    let conf = n.conf("hv", "hostdev", 72, json!({"device": nic, "deviceDriver": "vfio-pci"}));
    let mut cleanup = DelOnDrop { n: &n, dels: Vec::new() };
    let r = n.call("ADD", "v1", &c.path()).conf(&conf).expect_ok();
    cleanup.push("v1", &c, &conf);
    assert_eq!(r["interfaces"][0]["pciID"], pci.as_str());
    assert_eq!(driver_of(&pci).as_deref(), Some("vfio-pci"));
    assert!(n.link(&nic).is_none(), "{nic} has no interface while vfio-pci holds it");
    assert!(device_info("hv", "v1").exists());
    n.call("CHECK", "v1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    cleanup.dels.clear();
    n.call("DEL", "v1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert_eq!(driver_of(&pci).as_deref(), Some("igb"));
    assert_eq!(view(&nic), before, "{nic} is back with its name, MTU, MAC and state");
    assert!(!device_info("hv", "v1").exists());

    // Bound to vfio-pci by the operator: named by PCI address, left bound.
    must("ip", &["link", "set", &nic, "mtu", "1500"]);
    let bind = format!(
        "echo vfio-pci > /sys/bus/pci/devices/{pci}/driver_override && echo {pci} > /sys/bus/pci/drivers/igb/unbind && echo {pci} > /sys/bus/pci/drivers_probe"
    );
    must("sh", &["-c", &bind]);
    // IPAM is optional: a DPDK application often brings its own addressing.
    let mut held =
        n.conf("hv", "hostdev", 72, json!({"pciBusID": pci, "deviceDriver": "vfio-pci"}));
    held.as_object_mut().unwrap().remove("ipam");
    let r = n.call("ADD", "v2", &c.path()).conf(&held).expect_ok();
    assert_eq!(r["interfaces"][0]["pciID"], pci.as_str());
    assert!(r["ips"].as_array().is_none_or(Vec::is_empty), "no IPAM, no addresses: {r}");
    // The same NIC for a second container: it is claimed.
    let c2 = Netns::new("c");
    n.call("ADD", "v3", &c2.path())
        .conf(&held)
        .expect_err(11, &format!("{pci} is claimed by container v2"));
    n.call("DEL", "v2", &c.path()).conf(&with_prev(&held, &r)).expect_ok();
    let still = driver_of(&pci);
    let unbind = format!(
        "echo > /sys/bus/pci/devices/{pci}/driver_override && echo {pci} > /sys/bus/pci/drivers/vfio-pci/unbind && echo {pci} > /sys/bus/pci/drivers/igb/bind"
    );
    must("sh", &["-c", &unbind]);
    assert_eq!(still.as_deref(), Some("vfio-pci"), "DEL left the operator's binding");
    assert!(n.claims("hostdev").is_empty() && n.reservations("hv").is_empty());
    // The kernel names the NIC anew (ethN) after that rebind, and the guest's
    // udev renames it to its predictable name (the one it had) moments later.
    let netdev = || {
        std::fs::read_dir(format!("/sys/bus/pci/devices/{pci}/net"))
            .ok()?
            .next()?
            .ok()
            .map(|e| e.file_name().to_string_lossy().into_owned())
    };
    assert!(
        eventually(Duration::from_secs(20), || netdev().as_deref() == Some(nic.as_str())),
        "igb took {pci} back, named {:?} (want {nic})",
        netdev()
    );
    must("ip", &["link", "set", &nic, "up"]);
}
