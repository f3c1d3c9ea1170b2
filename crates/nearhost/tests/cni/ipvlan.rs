//! ipvlan. This machine's kernel may lack it: then ADD must say so clearly and
//! change nothing. The full ipvlan suite is marked ignored here and runs in the
//! kernel lab (scripts/kernel-lab), on a distribution kernel that has ipvlan.

use std::thread;

use serde_json::json;

use crate::support::*;

const LAB: &str = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)";

fn conf(h: &Host, mode: &str) -> serde_json::Value {
    netconf("1.1.0", "iv", "ipvlan", h.ipam_v4(), json!({"master": "eth0", "mode": mode}))
}

/// Runs where the kernel lacks ipvlan (this machine's); the kernel lab's
/// kernels have it and skip every `on_a_kernel_without_*` test, saying so.
#[test]
fn on_a_kernel_without_ipvlan_add_is_refused_and_changes_nothing() {
    assert!(!kernel_has("ipvlan"), "this kernel has ipvlan: the refusal cannot be observed here");
    let h = Host::new(90);
    let c1 = Netns::new("c");
    let conf = conf(&h, "l2");
    Call::new(&h.ns, "ADD", "i1", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(104, "this kernel has no ipvlan support");
    assert!(h.reservations("iv").is_empty());
    assert!(c1.link_names().is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn ipvlan_add_then_del_leaves_nothing() {
    assert!(kernel_has("ipvlan"), "{LAB}");
    let h = Host::new(90);
    let c1 = Netns::new("c");
    let conf = conf(&h, "l2");
    let r = Call::new(&h.ns, "ADD", "i1", &c1.path(), "eth0").conf(&conf).expect_ok();
    del(&h.ns, "i1", &c1.path(), &conf, Some(&r));
    assert!(h.reservations("iv").is_empty());
    assert!(c1.link_names().is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

#[test]
fn ipvlan_refuses_a_mac() {
    let h = Host::new(91);
    let c1 = Netns::new("c");
    let mut conf = conf(&h, "l2");
    conf["mac"] = json!("02:00:00:00:00:09");
    Call::new(&h.ns, "ADD", "i1", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(7, "mac: ipvlan interfaces share the master's MAC");
}

fn two_containers_and_gateway(mode: &str, net: u8) {
    let h = Host::new(net);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let mut conf = conf(&h, mode);
    if mode != "l2" {
        // L3 modes route in the master's namespace and answer no ARP on the
        // wire: the containers get their own subnet, which the upstream
        // router reaches through the host (as with host-gw).
        conf["ipam"]["ranges"] = json!([[{"subnet": format!("198.19.{net}.0/24")}]]);
        h.gw.ip(&["route", "add", &format!("198.19.{net}.0/24"), "via", &h.v4(2)]);
    }
    let r1 = add(&h.ns, "i1", &c1, &conf);
    let r2 = add(&h.ns, "i2", &c2, &conf);
    let link = c1.link("eth0").unwrap();
    assert_eq!(link["linkinfo"]["info_kind"], "ipvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], mode);
    // ipvlan children share the master's MAC
    assert_eq!(link["address"], h.ns.link("eth0").unwrap()["address"]);
    assert!(c1.ping(&result_ip(&r2, 0)), "{mode}: container to container");
    assert!(c1.ping(&h.v4(1)), "{mode}: container to gateway");
    check(&h.ns, "i1", &c1, &conf, &r1).expect_ok();
    del(&h.ns, "i1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "i1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "i2", "", &conf, None);
    del(&h.ns, "i2", &c2.path(), &conf, Some(&r2));
    assert!(h.reservations("iv").is_empty());
    assert!(c1.link_names().is_empty() && c2.link_names().is_empty());
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn l2_mode() {
    two_containers_and_gateway("l2", 92);
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn l3_mode() {
    two_containers_and_gateway("l3", 93);
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn l3s_mode() {
    two_containers_and_gateway("l3s", 94);
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn failing_add_rolls_back() {
    let h = Host::new(95);
    let c1 = Netns::new("c");
    c1.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    let mut conf = conf(&h, "l2");
    conf["ipam"]["routes"] = json!([{"dst": "198.19.200.0/24", "gw": "198.19.99.99"}]);
    Call::new(&h.ns, "ADD", "rb", &c1.path(), "eth1")
        .conf(&conf)
        .expect_err(105, "198.19.200.0/24");
    assert!(h.reservations("iv").is_empty());
    assert_eq!(c1.link_names(), vec!["eth0", "x0"]);
    let _ = LAB;
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn parallel_adds_get_distinct_addresses_and_leave_nothing() {
    let h = Host::new(96);
    let ctrs: Vec<Netns> = (0..20).map(|_| Netns::new("c")).collect();
    let conf = conf(&h, "l2");
    let results = add_parallel(&h.ns, "p", &ctrs, &conf);
    let mut ips: Vec<String> = results.iter().map(|r| result_ip(r, 0)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), ctrs.len());
    thread::scope(|s| {
        for (i, (c, r)) in ctrs.iter().zip(&results).enumerate() {
            let (hns, conf) = (&h.ns, &conf);
            s.spawn(move || del(hns, &format!("p{i}"), &c.path(), conf, Some(r)));
        }
    });
    assert!(h.reservations("iv").is_empty());
    assert!(ctrs.iter().all(|c| c.link_names().is_empty()));
}
