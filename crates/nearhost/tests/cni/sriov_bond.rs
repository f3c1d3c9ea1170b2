//! sriov-bond on stand-in hardware (crates/testkit/src/sriov.rs): one VF — a veth end —
//! from each of two PFs, bonded inside the container. This machine's kernel has
//! no bonding: the full cases are ignored here and run in the kernel lab
//! (scripts/kernel-lab --filter sriov_bond), on Debian's kernel.
//!
//! The stand-in PFs refuse IFLA_VF_MAC, so active-backup runs the fallback MAC
//! scheme here (`fail_over_mac=active`, each member keeps its MAC); the shared-MAC
//! path's PF message is covered by the kernel crate's byte-level tests.

use std::time::Duration;

use serde_json::json;

use crate::support::sriov::{pci_address, with_prev, Wire};
use crate::support::*;

const LAB: &str = "needs bonding: runs in the kernel lab (scripts/kernel-lab)";

/// Two PFs with two VFs each, on PCI buses `bus` and `bus + 1`.
fn wire(net: u8, bus: u8) -> Wire {
    let w = Wire::new(net);
    w.pf("pfa", bus, 2);
    w.pf("pfb", bus + 1, 2);
    w
}

/// The switch-side end of the cable of the VF with PCI address `pci`.
fn cable_of(bus: u8, pci: &str) -> String {
    for (pf, b) in [("pfa", bus), ("pfb", bus + 1)] {
        for i in 0..2 {
            if pci_address(b, Some(i)) == pci {
                return format!("{pf}s{i}");
            }
        }
    }
    panic!("{pci} is no VF of this wire")
}

fn active_member(c: &Netns) -> String {
    let out = c.exec(&["cat", "/sys/class/net/eth0/bonding/active_slave"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What must hold after DEL: every VF back in the host, nothing claimed or reserved.
fn all_clean(w: &Wire, network: &str, c: &Netns) {
    assert!(c.link_names().is_empty(), "left in the container: {:?}", c.link_names());
    for name in ["pfav0", "pfav1", "pfbv0", "pfbv1"] {
        assert!(w.host.link(name).is_some(), "{name} is not back in the host");
    }
    assert!(w.claims(network).is_empty(), "claims left: {:?}", w.claims(network));
    assert!(w.reservations(network).is_empty());
}

/// Runs where the kernel lacks bonding (this machine's); the kernel lab's
/// kernels have it and skip every `on_a_kernel_without_*` test, saying so.
#[test]
fn on_a_kernel_without_bonding_sriov_bond_is_refused_and_gives_both_vfs_back() {
    assert!(!kernel_has("bond"), "this kernel has bonding: the refusal cannot be observed here");
    let w = wire(130, 0x30);
    let c1 = Netns::new("c");
    let conf = w.conf("bk", "sriov-bond", json!({"pfs": ["pfa", "pfb"]}));
    w.call("ADD", "b1", &c1.path())
        .conf(&conf)
        .expect_err(104, "this kernel has no bonding support");
    all_clean(&w, "bk", &c1);
}

/// A multi-byte CNI_IFNAME (valid for the kernel) once panicked the plugin
/// while it named the bond members: the answer must be CNI error JSON.
#[test]
fn on_a_kernel_without_bonding_a_multibyte_ifname_gets_an_error_not_a_panic() {
    assert!(!kernel_has("bond"), "this kernel has bonding: the refusal cannot be observed here");
    let w = wire(132, 0x34);
    let c1 = Netns::new("c");
    let conf = w.conf("bm", "sriov-bond", json!({"pfs": ["pfa", "pfb"]}));
    Call::new(&w.host, "ADD", "b2", &c1.path(), "ééééééé")
        .env("NEARHOST_SYSFS_ROOT", &w.sysfs_root())
        .env("NEARHOST_CLAIMS_DIR", &w.claims_dir().display().to_string())
        .conf(&conf)
        .expect_err(104, "this kernel has no bonding support");
    all_clean(&w, "bm", &c1);
}

#[test]
#[ignore = "needs bonding: runs in the kernel lab (scripts/kernel-lab)"]
fn sriov_bond_add_then_del_gives_both_vfs_back() {
    assert!(kernel_has("bond"), "{LAB}");
    let w = wire(130, 0x30);
    let c1 = Netns::new("c");
    let conf = w.conf("bk", "sriov-bond", json!({"pfs": ["pfa", "pfb"]}));
    let r = w.call("ADD", "b1", &c1.path()).conf(&conf).expect_ok();
    w.call("DEL", "b1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    all_clean(&w, "bk", &c1);
}

#[test]
#[ignore = "needs bonding: runs in the kernel lab (scripts/kernel-lab)"]
fn sriov_bond_active_backup_keeps_traffic_flowing_when_a_member_goes_down() {
    assert!(kernel_has("bond"), "{LAB}");
    let w = wire(131, 0x32);
    let c1 = Netns::new("c");
    let conf = w.conf("ab", "sriov-bond", json!({"pfs": ["pfa", "pfb"], "miimon": 50}));
    let r = w.call("ADD", "a1", &c1.path()).conf(&conf).expect_ok();
    let names: Vec<&str> =
        r["interfaces"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["eth0", "eth0m0", "eth0m1"]);
    let bond = c1.link("eth0").unwrap();
    assert_eq!(bond["linkinfo"]["info_kind"], "bond");
    assert_eq!(bond["linkinfo"]["info_data"]["mode"], "active-backup");
    assert_eq!(
        bond["linkinfo"]["info_data"]["fail_over_mac"], "active",
        "stand-in PFs refuse IFLA_VF_MAC: the fallback"
    );
    for m in ["eth0m0", "eth0m1"] {
        assert_eq!(c1.link(m).unwrap()["master"], "eth0", "{m} is a member of the bond");
    }
    assert!(c1.ping(&w.v4(1)), "traffic crosses the bond");
    w.call("CHECK", "a1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();

    let pci_of = |m: &str| {
        r["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == m).unwrap()["pciID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for round in 0..2 {
        let active = active_member(&c1);
        let cable = cable_of(0x32, &pci_of(&active));
        // Continuous traffic while the active member's cable is pulled.
        let pinger = c1.spawn(&["ping", "-4", "-i", "0.1", "-c", "40", "-W", "1", &w.v4(1)]);
        std::thread::sleep(Duration::from_millis(1000));
        w.sw.ip(&["link", "set", &cable, "down"]);
        let out = pinger.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let received: u32 = text
            .split(", ")
            .find_map(|p| p.strip_suffix(" received"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            received >= 32,
            "round {round}: {received}/40 echo replies across the failover: {text}"
        );
        assert_ne!(active_member(&c1), active, "round {round}: the bond failed over");
        assert!(c1.ping(&w.v4(1)), "round {round}: traffic after the failover");
        w.sw.ip(&["link", "set", &cable, "up"]);
        std::thread::sleep(Duration::from_millis(300)); // let miimon see the carrier again
    }
    w.call("DEL", "a1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    all_clean(&w, "ab", &c1);
}

#[test]
#[ignore = "needs bonding: runs in the kernel lab (scripts/kernel-lab)"]
fn sriov_bond_balance_xor_and_802_3ad_form_and_pass_traffic() {
    assert!(kernel_has("bond"), "{LAB}");
    let w = wire(132, 0x34);
    for mode in ["balance-xor", "802.3ad"] {
        let c1 = Netns::new("c");
        let conf = w.conf(
            "xr",
            "sriov-bond",
            json!({"pfs": ["pfa", "pfb"], "mode": mode, "mac": "02:00:00:00:13:20"}),
        );
        let r = w.call("ADD", "x1", &c1.path()).conf(&conf).expect_ok();
        let bond = c1.link("eth0").unwrap();
        assert_eq!(bond["linkinfo"]["info_data"]["mode"], mode);
        assert_eq!(bond["address"], "02:00:00:00:13:20");
        for m in ["eth0m0", "eth0m1"] {
            let l = c1.link(m).unwrap();
            assert_eq!(
                (l["master"].as_str(), l["address"].as_str()),
                (Some("eth0"), Some("02:00:00:00:13:20")),
                "{mode}: {m}"
            );
        }
        assert!(c1.ping(&w.v4(1)), "{mode}: traffic crosses the bond");
        w.call("CHECK", "x1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
        let mut other = conf.clone();
        other["mode"] = json!(if mode == "802.3ad" { "balance-xor" } else { "802.3ad" });
        w.call("CHECK", "x1", &c1.path())
            .conf(&with_prev(&other, &r))
            .expect_err(106, "config says a bond in mode");
        w.call("DEL", "x1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
        all_clean(&w, "xr", &c1);
    }
}

#[test]
#[ignore = "needs bonding: runs in the kernel lab (scripts/kernel-lab)"]
fn sriov_bond_failed_add_and_gone_namespace_leave_nothing() {
    assert!(kernel_has("bond"), "{LAB}");
    let w = wire(133, 0x36);
    let c1 = Netns::new("c");
    let mut bad = w.conf("fg", "sriov-bond", json!({"pfs": ["pfa", "pfb"]}));
    bad["ipam"]["routes"] = json!([{"dst": "198.19.200.0/24", "gw": "198.19.99.99"}]);
    w.call("ADD", "f1", &c1.path()).conf(&bad).expect_err(105, "198.19.200.0/24");
    all_clean(&w, "fg", &c1);

    // A veth stand-in dies with the namespace (a real VF would come back to the
    // host: that path is tested with sriov); DEL must still release both claims.
    let conf = w.conf("fg", "sriov-bond", json!({"pfs": ["pfa", "pfb"]}));
    let c2 = Netns::new("c");
    let path = c2.path();
    let r = w.call("ADD", "f2", &path).conf(&conf).expect_ok();
    assert_eq!(w.claims("fg").len(), 2);
    drop(c2);
    w.call("DEL", "f2", &path).conf(&with_prev(&conf, &r)).expect_ok();
    w.call("DEL", "f2", "").conf(&conf).expect_ok();
    assert!(w.claims("fg").is_empty() && w.reservations("fg").is_empty());
}
