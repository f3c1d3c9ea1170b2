//! Every driver's config check, in two tables: good configs build, and a bad
//! field is refused (before anything is reserved or created) with a message
//! that starts with the field's JSON name and names the bad value.

use serde_json::{json, Value};

use crate::driver::DATAPATHS;

enum Want {
    /// The whole message.
    Exact(&'static str),
    /// Its beginning (the rest lists choices or explains at length).
    Starts(&'static str),
}
use Want::{Exact, Starts};

/// The driver's own config check (`build`), without the registry's lookup.
fn check(datapath: &str, conf: &Value) -> Result<(), String> {
    let reg = DATAPATHS.iter().find(|r| r.name == datapath).expect("a registered datapath");
    (reg.build)(conf).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn good_configs_build() {
    let cases = [
        ("macvlan", json!({})),
        (
            "macvlan",
            json!({"master": "eth1", "mode": "passthru", "mtu": 9000, "mac": "02:00:00:00:00:01", "allowDefaultRoute": true}),
        ),
        ("ipvlan", json!({"master": "eth1", "mode": "l3", "mtu": 1400})),
        ("routed", json!({"mtu": 1500, "mac": "02:00:00:00:00:02"})),
        ("sriov", json!({"pfs": ["p0", "p1"]})),
        (
            "sriov",
            json!({"pf": "p0", "vf": 3, "vlan": 10, "vlanQoS": 1, "vlanProto": "802.1Q", "spoofchk": true,
                         "trust": false, "minTxRate": 0, "maxTxRate": 100, "linkState": "auto", "mtu": 9000,
                         "mac": "02:00:00:00:00:07"}),
        ),
    ];
    for (datapath, conf) in cases {
        assert_eq!(check(datapath, &conf), Ok(()), "{datapath} {conf}");
    }
}

#[test]
fn bad_fields_are_refused_naming_the_field_and_value() {
    let cases = [
        (
            "macvlan",
            json!({"mode": "bridged"}),
            Exact("mode: \"bridged\" is not one of bridge, private, vepa, passthru"),
        ),
        ("macvlan", json!({"mtu": 20}), Exact("mtu: 20 is not a valid MTU (68..65535)")),
        (
            "macvlan",
            json!({"mtu": "1500"}),
            Exact("mtu: expected a non-negative integer, got \"1500\""),
        ),
        (
            "macvlan",
            json!({"mac": "01:00:00:00:00:01"}),
            Exact("mac: 01:00:00:00:00:01 is a multicast MAC address"),
        ),
        (
            "macvlan",
            json!({"allowDefaultRoute": 1}),
            Exact("allowDefaultRoute: expected true or false, got 1"),
        ),
        ("macvlan", json!({"master": "a/b"}), Starts("master: \"a/b\"")),
        ("macvlan", json!({"master": "xxxxxxxxxxxxxxxx"}), Starts("master: ")),
        ("macvlan", json!({"mac": "zz"}), Starts("mac: \"zz\" is not a MAC address")),
        (
            "ipvlan",
            json!({"mac": "02:00:00:00:00:01"}),
            Exact("mac: ipvlan interfaces share the master's MAC; remove \"mac\" or use macvlan"),
        ),
        ("ipvlan", json!({"mtu": 70000}), Exact("mtu: 70000 is not a valid MTU (68..65535)")),
        ("ipvlan", json!({"master": 3}), Exact("master: expected a string, got 3")),
        ("ipvlan", json!({"master": "a b"}), Starts("master: \"a b\"")),
        ("ipvlan", json!({"mode": "l4"}), Starts("mode: \"l4\" is not one of ")),
        (
            "bridge",
            json!({"isGateway": "yes"}),
            Exact("isGateway: expected true or false, got \"yes\""),
        ),
        (
            "bridge",
            json!({"isDefaultGateway": 0}),
            Exact("isDefaultGateway: expected true or false, got 0"),
        ),
        (
            "bridge",
            json!({"ipMasq": null, "mtu": 67}),
            Exact("mtu: 67 is not a valid MTU (68..65535)"),
        ),
        (
            "bridge",
            json!({"mac": "00:00:00:00:00:00"}),
            Exact("mac: 00:00:00:00:00:00 is not a usable MAC address"),
        ),
        ("bridge", json!({"bridge": "../br"}), Starts("bridge: \"../br\"")),
        ("routed", json!({"mtu": 10}), Exact("mtu: 10 is not a valid MTU (68..65535)")),
        (
            "routed",
            json!({"mac": "ff:ff:ff:ff:ff:ff"}),
            Exact("mac: ff:ff:ff:ff:ff:ff is a multicast MAC address"),
        ),
        ("routed", json!({"mac": 5}), Exact("mac: expected a string, got 5")),
        ("routed", json!([1]), Exact("(config): the network config must be a JSON object")),
        (
            "vxlan",
            json!({"vni": 0}),
            Exact("vni: 0 is not a VXLAN network identifier (1..16777215)"),
        ),
        (
            "vxlan",
            json!({"vni": 16777216}),
            Exact("vni: 16777216 is not a VXLAN network identifier (1..16777215)"),
        ),
        ("vxlan", json!({"port": 70000}), Exact("port: 70000 is not a UDP port")),
        ("vxlan", json!({"port": 0}), Exact("port: 0 is not a UDP port")),
        ("vxlan", json!({"mtu": 50}), Exact("mtu: 50 is not a valid MTU (68..65535)")),
        ("vxlan", json!({"underlay": "a/b"}), Starts("underlay: \"a/b\"")),
        ("vxlan", json!({"vxlanDevice": ""}), Starts("vxlanDevice: ")),
        ("sriov", json!({}), Exact("pf: is required: the physical function (PF) whose VFs to use")),
        (
            "sriov",
            json!({"pf": "a", "pfs": ["b"]}),
            Exact("pfs: give either \"pf\" or \"pfs\", not both"),
        ),
        ("sriov", json!({"pfs": []}), Exact("pfs: is empty; name at least one PF")),
        ("sriov", json!({"pf": "p0", "vlan": 5000}), Exact("vlan: 5000 is out of range (0..4095)")),
        ("sriov", json!({"pfs": ["ok", "not/ok"]}), Starts("pfs: \"not/ok\" contains")),
        (
            "sriov",
            json!({"pf": "p0", "vf": "one"}),
            Starts("vf: expected a non-negative integer, got \"one\""),
        ),
        (
            "sriov",
            json!({"pfs": ["p0", "p1"], "vf": 2}),
            Starts("vf: a fixed VF number needs a single PF"),
        ),
        ("sriov", json!({"pf": "p0", "mtu": 10}), Starts("mtu: 10 is not a valid MTU")),
        (
            "sriov",
            json!({"pf": "p0", "mac": "01:00:00:00:00:01"}),
            Starts("mac: 01:00:00:00:00:01 is a multicast"),
        ),
        ("sriov-bond", json!({"pfs": ["a"]}), Exact("pfs: needs exactly two PFs, got 1")),
        ("sriov-bond", json!({"pfs": ["a", "b", "c"]}), Exact("pfs: needs exactly two PFs, got 3")),
        (
            "sriov-bond",
            json!({"pfs": ["a", "a"]}),
            Exact("pfs: names a twice; the two VFs must come from two PFs"),
        ),
        (
            "sriov-bond",
            json!({"pfs": ["a", "b"], "vlanQoS": 9}),
            Exact("vlanQoS: 9 is out of range (0..7)"),
        ),
        ("sriov-bond", json!({}), Starts("pfs: is required")),
        (
            "sriov-bond",
            json!({"pfs": ["a", "b"], "vf": 1}),
            Starts("pfs: sriov-bond takes a VF from each"),
        ),
        (
            "sriov-bond",
            json!({"pfs": ["a", "b"], "mode": "balance-rr"}),
            Starts("mode: \"balance-rr\" is not one of active-backup, balance-xor, 802.3ad"),
        ),
        (
            "sriov-bond",
            json!({"pfs": ["a", "b"], "miimon": -5}),
            Starts("miimon: expected a non-negative integer"),
        ),
        ("hostdev", json!({}), Starts("device: is required")),
        (
            "hostdev",
            json!({"device": "eth1", "hwaddr": "02:00:00:00:00:01"}),
            Starts("device: give only one of"),
        ),
        ("hostdev", json!({"device": "a/b"}), Starts("device: \"a/b\"")),
        ("hostdev", json!({"hwaddr": "nope"}), Starts("hwaddr: \"nope\" is not a MAC address")),
        (
            "hostdev",
            json!({"device": "eth1", "allowDefaultRoute": "yes"}),
            Starts("allowDefaultRoute: expected true or false"),
        ),
    ];
    for (datapath, conf, want) in cases {
        let got =
            check(datapath, &conf).expect_err(&format!("{datapath}: {conf} should be refused"));
        match want {
            Exact(w) => assert_eq!(got, w, "{datapath} {conf}"),
            Starts(w) => {
                assert!(got.starts_with(w), "{datapath} {conf}: {got:?} does not start with {w:?}")
            }
        }
    }
}
