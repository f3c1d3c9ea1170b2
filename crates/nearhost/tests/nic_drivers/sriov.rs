//! sriov on igb: every VF setting the config can ask for, sent to the real
//! PF driver and read back from its VF report; DEL puts each back.

use serde_json::json;

use crate::support::nics::{Nics, VFS_PER_PF};
use crate::support::*;
use crate::*;

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn sriov_on_igb_applies_every_setting_and_del_restores_it() {
    let n = Nics::take();
    let [a, b] = n.pfs.clone();
    let (before, vfs_before) = (summaries(&n), host_vfs(&n));
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf1 = n.conf(
        "sv",
        "sriov",
        61,
        json!({"pf": a, "mac": "02:18:61:00:00:01", "vlan": 100, "vlanQoS": 3, "spoofchk": true,
               "trust": true, "maxTxRate": 100, "mtu": 1400}),
    );
    let r1 = n.call("ADD", "s1", &c1.path()).conf(&conf1).expect_ok();
    let (pf1, vf1) = vf_of(&n, &pci_in(&r1, "eth0"));
    assert_eq!(pf1, a);
    assert_eq!(
        summary(&n.vf_info(&a, vf1)),
        "mac 02:18:61:00:00:01 vlan 100 qos 3 spoofchk on trust on rate 0-100 state auto",
        "what the igb driver reports it applied to VF {vf1}"
    );
    let eth0 = c1.link("eth0").expect("the VF is eth0 in the container");
    assert_eq!(eth0["address"], "02:18:61:00:00:01", "the VF driver took the PF's MAC");
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(driver_in(&c1, "eth0"), "igbvf");

    // A VF of the other PF, on the same VLAN: the two PFs tag and untag, the
    // hub carries the tagged frames between them.
    let conf2 = n.conf("sv", "sriov", 61, json!({"pf": b, "vlan": 100}));
    let r2 = n.call("ADD", "s2", &c2.path()).conf(&conf2).expect_ok();
    assert!(reaches(&c1, &result_ip(&r2, 0)), "VFs of two PFs reach each other over VLAN 100");
    assert!(reaches(&c2, &result_ip(&r1, 0)));
    n.call("CHECK", "s1", &c1.path()).conf(&with_prev(&conf1, &r1)).expect_ok();
    n.call("CHECK", "s2", &c2.path()).conf(&with_prev(&conf2, &r2)).expect_ok();
    // CHECK reads the PF's report: a VLAN changed behind nearhost's back shows.
    must("ip", &["link", "set", &a, "vf", &vf1.to_string(), "vlan", "200"]);
    n.call("CHECK", "s1", &c1.path())
        .conf(&with_prev(&conf1, &r1))
        .expect_err(106, &format!("VF {vf1} has vlan 200"));
    must("ip", &["link", "set", &a, "vf", &vf1.to_string(), "vlan", "100", "qos", "3"]);

    n.call("DEL", "s1", &c1.path()).conf(&with_prev(&conf1, &r1)).expect_ok();
    assert!(c1.link_names().is_empty());
    // The second container's namespace is gone before its DEL (the kernel
    // returns the VF to the initial namespace, under whatever name is free).
    drop(c2);
    n.call("DEL", "s2", "").conf(&conf2).expect_ok();
    assert_eq!(restored(&n, &before), before, "every VF's PF settings are as before");
    assert_eq!(host_vfs(&n), vfs_before, "every VF is back with its name, MTU and MAC");
    assert!(n.claims("sriov-vfs").is_empty() && n.reservations("sv").is_empty());
}

/// What igb cannot do comes back as a config error naming the field, the value
/// and the driver; what ADD had set before the refusal is undone.
#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn driver_refusals_name_the_field_and_leave_the_vf_as_it_was() {
    let n = Nics::take();
    let a = n.pfs[0].clone();
    let (before, vfs_before) = (summaries(&n), host_vfs(&n));
    let c = Netns::new("c");
    let cases = [
        (json!({"vlan": 100, "vlanProto": "802.1ad"}), "vlanProto", "vlan 100 qos 0 proto 802.1ad"),
        (json!({"minTxRate": 10, "maxTxRate": 100}), "minTxRate", "min_tx_rate 10 max_tx_rate 100"),
        // VLAN and spoof checking are taken, then the link state is refused:
        // the rollback undoes the first two and does not trip over the third.
        (
            json!({"vlan": 100, "spoofchk": false, "linkState": "enable"}),
            "linkState",
            "state enable",
        ),
    ];
    for (extra, field, setting) in cases {
        let mut extra = extra;
        extra["pf"] = json!(a);
        let conf = n.conf("rf", "sriov", 62, extra);
        n.call("ADD", "r1", &c.path())
            .conf(&conf)
            .expect_err(7, &format!("{field}: PF {a} (driver igb) refuses VF 0 {setting}: "));
        assert_eq!(restored(&n, &before), before, "after the {field} refusal");
        assert_eq!(host_vfs(&n), vfs_before, "after the {field} refusal");
        assert!(c.link_names().is_empty(), "{:?}", c.link_names());
        assert!(n.claims("sriov-vfs").is_empty() && n.reservations("rf").is_empty());
    }
}

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn every_vf_taken_gives_code_11_and_changes_nothing() {
    let n = Nics::take();
    let a = n.pfs[0].clone();
    let before = summaries(&n);
    let conf = n.conf("fl", "sriov", 64, json!({"pf": a, "vlan": 300}));
    let ctrs: Vec<Netns> = (0..=VFS_PER_PF).map(|_| Netns::new("c")).collect();
    let mut results = Vec::new();
    for (i, c) in ctrs.iter().take(VFS_PER_PF).enumerate() {
        results.push(n.call("ADD", &format!("f{i}"), &c.path()).conf(&conf).expect_ok());
    }
    let taken = without_mac(&summaries(&n));
    let last = &ctrs[VFS_PER_PF];
    n.call("ADD", "fx", &last.path()).conf(&conf).expect_err(
        11,
        &format!("no free VF on {a}: {VFS_PER_PF} enabled, {VFS_PER_PF} claimed by containers"),
    );
    assert!(last.link_names().is_empty());
    assert_eq!(without_mac(&summaries(&n)), taken, "the refused ADD set nothing on any VF");
    assert_eq!(n.reservations("fl").len(), VFS_PER_PF, "and holds no address");
    for (i, c) in ctrs.iter().take(VFS_PER_PF).enumerate() {
        n.call("DEL", &format!("f{i}"), &c.path()).conf(&with_prev(&conf, &results[i])).expect_ok();
    }
    assert_eq!(restored(&n, &before), before);
    assert!(n.claims("sriov-vfs").is_empty() && n.reservations("fl").is_empty());
}
