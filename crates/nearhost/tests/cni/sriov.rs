//! The sriov datapath on stand-in hardware (see crates/testkit/src/sriov.rs): VFs are veth
//! ends named by a fake sysfs tree, so claims, moves, renames, addresses and
//! restores are real kernel operations. The PF-side VF settings (IFLA_VF_*) are
//! refused by a veth PF: their bytes are checked in the kernel crate's tests,
//! and here only that a refusal rolls everything back.

use std::thread;

use nearhost_kernel::sysfs::Sysfs;
use serde_json::{json, Value};

use crate::support::sriov::{pci_address, with_prev, Wire};
use crate::support::*;

#[track_caller]
fn add_ok(w: &Wire, id: &str, ctr: &Netns, conf: &Value) -> Value {
    w.call("ADD", id, &ctr.path()).conf(conf).expect_ok()
}

#[track_caller]
fn del_ok(w: &Wire, id: &str, netns: &str, conf: &Value, prev: Option<&Value>) {
    let c = prev.map_or_else(|| conf.clone(), |p| with_prev(conf, p));
    w.call("DEL", id, netns).conf(&c).expect_ok();
}

/// The host's view of a VF: (mtu, mac, up).
fn host_state(w: &Wire, name: &str) -> (u64, String, bool) {
    let l = w.host.link(name).unwrap_or_else(|| panic!("{name} is not in the host namespace"));
    let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    (l["mtu"].as_u64().unwrap(), l["address"].as_str().unwrap().to_string(), up)
}

#[test]
fn add_check_del_move_a_vf_in_and_back() {
    let w = Wire::new(110);
    let vfs = w.pf("pf0", 0x11, 3);
    w.host.ip(&["link", "set", &vfs[0], "mtu", "1500"]);
    let before = host_state(&w, &vfs[0]);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = w.conf("sv", "sriov", json!({"pf": "pf0", "mtu": 1400}));
    let r1 = add_ok(&w, "s1", &c1, &conf);

    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(
        r1["interfaces"][0]["pciID"],
        pci_address(0x11, Some(0)),
        "CNI 1.1 results carry the VF's PCI address"
    );
    assert_eq!(r1["interfaces"][0]["mtu"], 1400);
    assert!(w.host.link(&vfs[0]).is_none(), "the VF left the host namespace");
    let link = c1.link("eth0").expect("VF in the container as eth0");
    assert_eq!(link["address"].as_str().unwrap(), before.1, "it is the same device");
    assert_eq!(c1.addrs("eth0"), vec![format!("{}/24", result_ip(&r1, 0))]);
    assert!(c1.ping(&w.v4(1)), "the container reaches the gateway through its VF");
    let claims = w.claims("sv");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[&pci_address(0x11, Some(0))]["container_id"], "s1");
    w.call("CHECK", "s1", &c1.path()).conf(&with_prev(&conf, &r1)).expect_ok();

    let r2 = add_ok(&w, "s2", &c2, &conf);
    assert_eq!(r2["interfaces"][0]["pciID"], pci_address(0x11, Some(1)), "the next free VF");

    del_ok(&w, "s1", &c1.path(), &conf, Some(&r1));
    assert!(c1.link("eth0").is_none());
    assert_eq!(host_state(&w, &vfs[0]), before, "name, MTU, MAC and down state restored");
    assert!(w.host.addrs(&vfs[0]).is_empty());
    del_ok(&w, "s1", &c1.path(), &conf, Some(&r1)); // again
    del_ok(&w, "s1", "", &conf, None); // containerd's second DEL, no netns
    assert_eq!(w.claims("sv").keys().collect::<Vec<_>>(), vec![&pci_address(0x11, Some(1))]);
    del_ok(&w, "s2", &c2.path(), &conf, Some(&r2));
    assert!(w.claims("sv").is_empty() && w.reservations("sv").is_empty());
    let mut names = vec!["pf0".to_string()];
    names.extend(vfs);
    assert_eq!(w.host.link_names(), names, "every VF is back under its own name");
}

#[test]
fn check_reports_what_differs() {
    let w = Wire::new(111);
    w.pf("pf0", 0x12, 1);
    let c1 = Netns::new("c");
    let conf = w.conf("ck", "sriov", json!({"pf": "pf0", "mtu": 1400}));
    let r = add_ok(&w, "k1", &c1, &conf);
    c1.ip(&["link", "set", "eth0", "mtu", "1300"]);
    w.call("CHECK", "k1", &c1.path())
        .conf(&with_prev(&conf, &r))
        .expect_err(106, "eth0 has MTU 1300, config says 1400");
    c1.ip(&["link", "set", "eth0", "mtu", "1400"]);
    w.call("CHECK", "k2", &c1.path())
        .conf(&with_prev(&conf, &r))
        .expect_err(106, "no VF claim is recorded for container k2");
    del_ok(&w, "k1", &c1.path(), &conf, Some(&r));
}

/// When a container's namespace dies, the kernel returns a *physical* VF to the
/// initial namespace (renamed `devN` if its name is taken there). A veth
/// stand-in is destroyed with the namespace instead, so this test plays the
/// kernel's part by hand for one VF: it moves the VF into the host under the
/// name the kernel would give it, points the fake sysfs entry at it, and lets
/// the namespace go. DEL must find it by PCI address, give it back its name and
/// MTU, and release the claim. The other VF stays gone, as a veth does: DEL
/// must still succeed and release it.
#[test]
fn del_after_the_namespace_is_gone() {
    let w = Wire::new(112);
    let vfs = w.pf("pf0", 0x13, 2);
    let before = host_state(&w, &vfs[0]);
    let conf = w.conf("gone", "sriov", json!({"pf": "pf0", "mtu": 1400}));
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let (p1, p2) = (c1.path(), c2.path());
    let r1 = add_ok(&w, "g1", &c1, &conf);
    let r2 = add_ok(&w, "g2", &c2, &conf);
    // The kernel's part for VF 0: back in the host, renamed, still at the container's MTU.
    c1.ip(&["link", "set", "eth0", "netns", &w.host.name, "name", "dev7"]);
    w.set_netdev(&pci_address(0x13, Some(0)), "dev7");
    drop(c1);
    drop(c2);
    assert!(w.host.link(&vfs[0]).is_none() && w.host.link(&vfs[1]).is_none());
    assert_eq!(w.host.link("dev7").unwrap()["mtu"], 1400);
    del_ok(&w, "g1", &p1, &conf, Some(&r1));
    assert!(w.host.link("dev7").is_none(), "found by PCI address and renamed");
    assert_eq!(host_state(&w, &vfs[0]).0, before.0, "MTU restored");

    del_ok(&w, "g2", &p2, &conf, Some(&r2));
    del_ok(&w, "g2", &p2, &conf, Some(&r2));
    assert!(w.claims("gone").is_empty(), "both claims released: {:?}", w.claims("gone"));
    assert!(w.reservations("gone").is_empty());
}

#[test]
fn twenty_parallel_adds_over_eight_vfs() {
    let w = Wire::new(113);
    let vfs = w.pf("pf0", 0x14, 8);
    let ctrs: Vec<Netns> = (0..20).map(|_| Netns::new("c")).collect();
    let conf = w.conf("par", "sriov", json!({"pf": "pf0"}));
    let outs: Vec<CniOut> = thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (w, conf) = (&w, &conf);
                s.spawn(move || w.call("ADD", &format!("p{i}"), &c.path()).conf(conf))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let ok: Vec<&CniOut> = outs.iter().filter(|o| o.ok).collect();
    assert_eq!(ok.len(), 8, "exactly one ADD per VF succeeds");
    for o in outs.iter().filter(|o| !o.ok) {
        o.expect_err(11, "no free VF on pf0");
    }
    let mut pcis: Vec<&str> =
        ok.iter().map(|o| o.json["interfaces"][0]["pciID"].as_str().unwrap()).collect();
    pcis.sort();
    pcis.dedup();
    assert_eq!(pcis.len(), 8, "a VF was handed out twice");
    assert_eq!(w.claims("par").len(), 8);
    assert_eq!(w.reservations("par").len(), 8, "the failed ADDs released their addresses");
    let inv = nearhost_datapath::vf_inventory(&Sysfs::at(w.sysfs.path()), &w.claims_dir()).unwrap();
    assert_eq!(
        (inv[0].pf.as_str(), inv[0].enabled, inv[0].free, inv[0].claimed.len()),
        ("pf0", 8, 0, 8)
    );

    thread::scope(|s| {
        for (i, (c, o)) in ctrs.iter().zip(&outs).enumerate() {
            let (w, conf) = (&w, &conf);
            let prev = o.ok.then_some(&o.json);
            s.spawn(move || del_ok(w, &format!("p{i}"), &c.path(), conf, prev));
        }
    });
    assert!(w.claims("par").is_empty() && w.reservations("par").is_empty());
    assert!(ctrs.iter().all(|c| c.link_names().is_empty()));
    let inv = nearhost_datapath::vf_inventory(&Sysfs::at(w.sysfs.path()), &w.claims_dir()).unwrap();
    assert_eq!(inv[0].free, 8);
    assert!(vfs.iter().all(|v| w.host.link(v).is_some()), "all VFs back in the host");
}

#[test]
fn a_failed_add_leaves_the_vf_in_the_host_and_nothing_claimed() {
    let w = Wire::new(114);
    let vfs = w.pf("pf0", 0x15, 1);
    let before = host_state(&w, &vfs[0]);
    let c1 = Netns::new("c");
    let mut conf = w.conf("rb", "sriov", json!({"pf": "pf0", "mtu": 1400}));
    // A route via a gateway that is not on-link: the last step of ADD fails.
    conf["ipam"]["routes"] = json!([{"dst": "198.19.200.0/24", "gw": "198.19.99.99"}]);
    w.call("ADD", "r1", &c1.path()).conf(&conf).expect_err(105, "198.19.200.0/24");
    assert_eq!(host_state(&w, &vfs[0]), before, "VF back with its name, MTU and MAC");
    assert!(c1.link_names().is_empty());
    assert!(w.claims("rb").is_empty() && w.reservations("rb").is_empty());
}

#[test]
fn a_vf_setting_the_pf_refuses_is_rolled_back() {
    let w = Wire::new(115);
    let vfs = w.pf("pf0", 0x16, 1);
    let c1 = Netns::new("c");
    let conf = w.conf("vl", "sriov", json!({"pf": "pf0", "vlan": 100, "vlanQoS": 2}));
    // A veth PF has no VFs to configure: the kernel refuses IFLA_VF_*
    // (EOPNOTSUPP), as a driver refuses what it cannot do — a config error
    // naming the field and the setting (igb's refusals: tests/nic_drivers).
    w.call("ADD", "v1", &c1.path()).conf(&conf).expect_err(
        7,
        "vlan: PF pf0 refuses VF 0 vlan 100 qos 2 proto 802.1Q: Operation not supported",
    );
    assert!(w.host.link(&vfs[0]).is_some() && c1.link_names().is_empty());
    assert!(w.claims("vl").is_empty() && w.reservations("vl").is_empty());
}

#[test]
fn a_fixed_vf_is_taken_or_busy() {
    let w = Wire::new(116);
    w.pf("pf0", 0x17, 3);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = w.conf("fx", "sriov", json!({"pf": "pf0", "vf": 2}));
    let r = add_ok(&w, "f1", &c1, &conf);
    assert_eq!(r["interfaces"][0]["pciID"], pci_address(0x17, Some(2)));
    w.call("ADD", "f2", &c2.path())
        .conf(&conf)
        .expect_err(11, "VF 2 of pf0 is claimed by container f1 (eth0)");
    let mut five = conf.clone();
    five["vf"] = json!(5);
    w.call("ADD", "f2", &c2.path())
        .conf(&five)
        .expect_err(7, "vf: pf0 has no VF 5 (VFs enabled: 3)");
    assert_eq!(w.reservations("fx").len(), 1);
    del_ok(&w, "f1", &c1.path(), &conf, Some(&r));
}

#[test]
fn a_second_pf_is_used_when_the_first_is_full() {
    let w = Wire::new(117);
    w.pf("pfa", 0x18, 1);
    w.pf("pfb", 0x19, 1);
    let ctrs: Vec<Netns> = (0..3).map(|_| Netns::new("c")).collect();
    let conf = w.conf("two", "sriov", json!({"pfs": ["pfa", "pfb"]}));
    let r0 = add_ok(&w, "t0", &ctrs[0], &conf);
    let r1 = add_ok(&w, "t1", &ctrs[1], &conf);
    assert_eq!(r0["interfaces"][0]["pciID"], pci_address(0x18, Some(0)));
    assert_eq!(r1["interfaces"][0]["pciID"], pci_address(0x19, Some(0)));
    let e = w.call("ADD", "t2", &ctrs[2].path()).conf(&conf);
    e.expect_err(11, "no free VF on pfa");
    assert!(e.msg().contains("no free VF on pfb"), "{}", e.msg());
    del_ok(&w, "t0", &ctrs[0].path(), &conf, Some(&r0));
    del_ok(&w, "t1", &ctrs[1].path(), &conf, Some(&r1));
}

#[test]
fn config_and_environment_errors_say_what_is_wrong() {
    let w = Wire::new(118);
    w.pf("pf0", 0x1a, 1);
    w.host.ip(&["link", "add", "plain0", "type", "veth", "peer", "name", "plain1"]);
    let c1 = Netns::new("c");
    let err = |extra: Value, code: u64, needle: &str| {
        w.call("ADD", "e1", &c1.path())
            .conf(&w.conf("er", "sriov", extra))
            .expect_err(code, needle);
    };
    err(json!({"pf": "gone0"}), 7, "pf: no interface named \"gone0\" in the host namespace");
    err(json!({"pf": "plain0"}), 7, "pf: plain0 is not an SR-IOV physical function");
    err(json!({"pf": "pf0", "mtu": 9000}), 7, "mtu: 9000 exceeds the MTU 1500 of PF pf0");
    err(
        json!({"pf": "pf0", "vlanProto": "802.1x", "vlan": 3}),
        7,
        "vlanProto: \"802.1x\" is not one of",
    );
    err(
        json!({"pf": "pf0", "minTxRate": 9, "maxTxRate": 1}),
        7,
        "minTxRate: 9 exceeds maxTxRate 1",
    );
    // Kernel bypass: the driver, the MTU it cannot have, then what the host lacks.
    err(json!({"pf": "pf0", "deviceDriver": "uio"}), 7, "deviceDriver: \"uio\" is not a userspace driver nearhost hands devices to (known: vfio-pci)");
    err(
        json!({"pf": "pf0", "deviceDriver": "vfio-pci", "mtu": 1400}),
        7,
        "mtu: a VF handed to vfio-pci has no interface to set it on",
    );
    err(json!({"pf": "pf0", "requireHugepages": false}), 7, "requireHugepages: only applies with");
    let vfio = json!({"pf": "pf0", "deviceDriver": "vfio-pci"});
    err(vfio.clone(), 104, "deviceDriver: the vfio-pci driver is not loaded");
    std::fs::create_dir_all(std::path::Path::new(&w.sysfs_root()).join("bus/pci/drivers/vfio-pci"))
        .unwrap();
    err(vfio, 104, "deviceDriver: this machine has no IOMMU");
    assert!(w.reservations("er").is_empty() && w.claims("er").is_empty());
    let status = w.call("STATUS", "", "").conf(&w.conf("er", "sriov", json!({"pf": "plain0"})));
    status.expect_err(50, "plain0 is not an SR-IOV physical function");
}

#[test]
fn the_vf_carrying_the_host_default_route_is_left_alone() {
    let w = Wire::new(119);
    let vfs = w.pf("pf0", 0x1b, 2);
    w.host.ip(&["link", "set", &vfs[0], "up"]);
    w.host.ip(&["addr", "add", &format!("{}/24", w.v4(9)), "dev", &vfs[0]]);
    w.host.ip(&["route", "add", "default", "via", &w.v4(1), "dev", &vfs[0]]);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = w.conf("up", "sriov", json!({"pf": "pf0"}));
    let r = add_ok(&w, "u1", &c1, &conf);
    assert_eq!(
        r["interfaces"][0]["pciID"],
        pci_address(0x1b, Some(1)),
        "the uplink VF was skipped"
    );
    let mut fixed = conf.clone();
    fixed["vf"] = json!(0);
    w.call("ADD", "u2", &c2.path())
        .conf(&fixed)
        .expect_err(7, "vf: VF 0 of pf0 (pf0v0) carries the host's default route");
    w.call("ADD", "u2", &c2.path())
        .conf(&conf)
        .expect_err(11, "1 carrying the host's default route");
    assert!(w.host.link(&vfs[0]).is_some() && c2.link_names().is_empty());
    del_ok(&w, "u1", &c1.path(), &conf, Some(&r));
}

/// A container with NET_ADMIN renames its VF and puts a veth of its own under
/// the VF's name. DEL must bring home the VF (found by its index in the
/// container and what the kernel says it is), never the look-alike.
#[test]
fn del_brings_home_the_vf_not_a_look_alike_under_its_name() {
    let w = Wire::new(140);
    let vfs = w.pf("pf0", 0x40, 1);
    let index = w.host.link(&vfs[0]).unwrap()["ifindex"].clone();
    let c1 = Netns::new("c");
    let conf = w.conf("la", "sriov", json!({"pf": "pf0"}));
    let r = add_ok(&w, "l1", &c1, &conf);
    c1.ip(&["link", "set", "eth0", "down"]);
    c1.ip(&["link", "set", "eth0", "name", "hid0"]);
    c1.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    del_ok(&w, "l1", &c1.path(), &conf, Some(&r));
    assert_eq!(c1.link_names(), vec!["eth0", "eth0p"], "the look-alike stays in the container");
    let home = w.host.link(&vfs[0]).expect("a device back in the host under the VF's name");
    assert_eq!(home["ifindex"], index, "it is the VF, not the look-alike");
    assert!(w.claims("la").is_empty());
}

/// The container moved its VF away (into a namespace of its own) and left a
/// veth under its name: nothing in the container is positively the VF, so DEL
/// leaves everything where it is, says so in the log, keeps the claim — and
/// succeeds. Once the VF is back in the host (the kernel's part when the
/// namespace holding it dies), the next DEL finds it by PCI address.
#[test]
fn del_leaves_a_vf_it_cannot_identify_where_it_is() {
    let w = Wire::new(141);
    let vfs = w.pf("pf0", 0x41, 1);
    let (c1, away) = (Netns::new("c"), Netns::new("x"));
    let conf = w.conf("ui", "sriov", json!({"pf": "pf0"}));
    let r = add_ok(&w, "u1", &c1, &conf);
    c1.ip(&["link", "set", "eth0", "netns", &away.name]);
    c1.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    let out = w.call("DEL", "u1", &c1.path()).conf(&with_prev(&conf, &r));
    assert!(out.ok, "DEL must succeed: {} {}", out.json, out.stderr);
    assert!(out.stderr.contains("left where it is"), "DEL says so in the log: {}", out.stderr);
    assert_eq!(c1.link_names(), vec!["eth0", "eth0p"], "the look-alike is not adopted");
    assert!(away.link("eth0").is_some() && w.host.link(&vfs[0]).is_none());
    assert_eq!(w.claims("ui").len(), 1, "the VF is still claimed");

    away.ip(&["link", "set", "eth0", "netns", &w.host.name]);
    w.set_netdev(&pci_address(0x41, Some(0)), "eth0");
    del_ok(&w, "u1", "", &conf, None);
    assert!(w.host.link(&vfs[0]).is_some(), "found by PCI address and renamed");
    assert!(w.claims("ui").is_empty());
}

/// Claims are node-wide: a VF network `na` still claims (its container's
/// namespace is gone, its DEL not yet run) is not handed out by network `nb`
/// on the same PF, and na's late DEL brings home its own VF only.
#[test]
fn a_vf_claimed_by_one_network_is_not_handed_out_by_another() {
    let w = Wire::new(143);
    let vfs = w.pf("pf0", 0x42, 2);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let p1 = c1.path();
    let na = w.conf("na", "sriov", json!({"pf": "pf0"}));
    let nb = w.conf("nb", "sriov", json!({"pf": "pf0"}));
    let ra = add_ok(&w, "a1", &c1, &na);
    // The kernel's part when c1 dies: VF 0 back in the host, as dev3.
    c1.ip(&["link", "set", "eth0", "netns", &w.host.name, "name", "dev3"]);
    w.set_netdev(&pci_address(0x42, Some(0)), "dev3");
    drop(c1);
    let rb = add_ok(&w, "b1", &c2, &nb);
    assert_eq!(rb["interfaces"][0]["pciID"], pci_address(0x42, Some(1)), "VF 0 is still na's");
    del_ok(&w, "a1", &p1, &na, Some(&ra));
    assert!(w.host.link(&vfs[0]).is_some() && w.host.link("dev3").is_none(), "na's VF is home");
    assert!(c2.link("eth0").is_some() && c2.ping(&w.v4(1)), "nb's VF stays with its container");
    assert!(w.claims("na").is_empty());
    assert_eq!(w.claims("nb").keys().collect::<Vec<_>>(), vec![&pci_address(0x42, Some(1))]);
    del_ok(&w, "b1", &c2.path(), &nb, Some(&rb));
    assert!(w.claims("nb").is_empty() && w.host.link(&vfs[1]).is_some());
}

/// CNI GC releases the VF claims of attachments the runtime no longer lists,
/// as DEL would — those of the network GC was called for, and no others.
#[test]
fn gc_releases_the_vf_claims_of_attachments_that_are_gone() {
    let w = Wire::new(144);
    let vfs = w.pf("pf0", 0x43, 3);
    let (c1, c2, c3) = (Netns::new("c"), Netns::new("c"), Netns::new("c"));
    let conf = w.conf("gc", "sriov", json!({"pf": "pf0"}));
    let other = w.conf("go", "sriov", json!({"pf": "pf0"}));
    add_ok(&w, "g1", &c1, &conf);
    let r2 = add_ok(&w, "g2", &c2, &conf);
    let r3 = add_ok(&w, "g3", &c3, &other);
    // The kernel's part when c1 dies: g1's VF back in the host, as dev5.
    c1.ip(&["link", "set", "eth0", "netns", &w.host.name, "name", "dev5"]);
    w.set_netdev(&pci_address(0x43, Some(0)), "dev5");
    drop(c1);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g2", "ifname": "eth0"}]);
    w.call("GC", "", "").conf(&gc).expect_ok();
    assert!(w.host.link(&vfs[0]).is_some() && w.host.link("dev5").is_none(), "g1's VF is home");
    assert_eq!(w.claims("gc").keys().collect::<Vec<_>>(), vec![&pci_address(0x43, Some(1))]);
    assert_eq!(w.claims("go").len(), 1, "another network's claim is not this GC's");
    assert!(c2.link("eth0").is_some() && c3.link("eth0").is_some());
    del_ok(&w, "g2", &c2.path(), &conf, Some(&r2));
    del_ok(&w, "g3", &c3.path(), &other, Some(&r3));
    assert!(w.claims("gc").is_empty() && w.claims("go").is_empty());
}
