//! Every bad input: the right code, a message naming the field and value, and
//! no change of state (links in both namespaces, the IPAM file).

use serde_json::{json, Value};

use crate::support::*;

struct Snapshot {
    host: Vec<String>,
    ctr: Vec<String>,
    state: Option<String>,
}

fn snapshot(h: &Host, c: &Netns, net: &str) -> Snapshot {
    Snapshot { host: h.ns.link_names(), ctr: c.link_names(), state: h.state_file(net) }
}

#[track_caller]
fn assert_unchanged(before: &Snapshot, h: &Host, c: &Netns, net: &str) {
    assert_eq!(h.ns.link_names(), before.host, "host links changed");
    assert_eq!(c.link_names(), before.ctr, "container links changed");
    assert_eq!(h.state_file(net), before.state, "IPAM state changed");
}

/// One existing attachment so that the state file exists and holds something.
fn setup(net: u8) -> (Host, Netns, Netns, Value) {
    let h = Host::new(net);
    let (c0, c1) = (Netns::new("c"), Netns::new("c"));
    let conf = netconf("1.1.0", "err", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    add(&h.ns, "existing", &c0, &conf);
    (h, c0, c1, conf)
}

fn with(conf: &Value, path: &str, v: Value) -> Value {
    let mut c = conf.clone();
    let mut target = &mut c;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        target = match p.parse::<usize>() {
            Ok(i) => &mut target[i],
            Err(_) => &mut target[*p],
        };
    }
    let last = parts[parts.len() - 1];
    if v.is_null() {
        target.as_object_mut().unwrap().remove(last);
    } else {
        target[last] = v;
    }
    c
}

#[test]
fn config_errors_are_code_7_and_name_the_field() {
    let (h, _c0, c1, conf) = setup(40);
    let before = snapshot(&h, &c1, "err");
    let cases: Vec<(Value, &str)> = vec![
        (with(&conf, "datapath", json!("warp")), "datapath: unknown datapath \"warp\""),
        (with(&conf, "datapath", Value::Null), "datapath: is required"),
        (with(&conf, "master", json!("nosuch0")), "master: no interface named \"nosuch0\""),
        (with(&conf, "mtu", json!(9000)), "mtu: 9000 exceeds the MTU 1500 of master eth0"),
        (with(&conf, "mode", json!("turbo")), "mode: \"turbo\" is not one of"),
        (with(&conf, "ipam.ranges.0.0.subnet", json!("198.18.0.0/40")), "ipam.ranges[0][0].subnet"),
        (
            with(&conf, "ipam.ranges.0.0.rangeStart", json!("198.18.41.10")),
            "ipam.ranges[0][0].rangeStart: 198.18.41.10 is outside subnet",
        ),
        (
            with(&conf, "ipam.ranges.0.0.rangeEnd", json!("198.18.40.50")),
            "ipam.ranges[0][0].rangeEnd: 198.18.40.50 is before rangeStart",
        ),
        (with(&conf, "name", Value::Null), "name: is required"),
        (with(&conf, "ipam.type", Value::Null), "ipam.type: is required"),
    ];
    for (bad, needle) in cases {
        Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0").conf(&bad).expect_err(7, needle);
        assert_unchanged(&before, &h, &c1, "err");
    }
}

#[test]
fn master_absent_without_a_default_route() {
    let (h, _c0, c1, conf) = setup(41);
    h.ns.ip(&["route", "del", "default"]);
    let before = snapshot(&h, &c1, "err");
    let out = Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0").conf(&with(
        &conf,
        "master",
        Value::Null,
    ));
    out.expect_err(7, "master: not set, and the host namespace has no default route");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn decode_and_version_errors() {
    let (h, _c0, c1, conf) = setup(42);
    let before = snapshot(&h, &c1, "err");
    let call = Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0");
    call.run(b"{\"cniVersion\": \"1.1.0\", ").expect_err(6, "not valid JSON");
    call.conf(&with(&conf, "cniVersion", json!("0.2.0")))
        .expect_err(1, "cniVersion: \"0.2.0\" is not supported");
    call.conf(&with(&conf, "cniVersion", json!("9.9.9"))).expect_err(1, "9.9.9");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn environment_errors_are_code_4_and_name_the_variable() {
    let (h, _c0, c1, conf) = setup(43);
    let before = snapshot(&h, &c1, "err");
    let base = || Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0");
    base()
        .env("CNI_IFNAME", "much-too-long-name")
        .conf(&conf)
        .expect_err(4, "CNI_IFNAME: \"much-too-long-name\" is longer than 15 bytes");
    base()
        .env("CNI_NETNS", "/etc/hostname")
        .conf(&conf)
        .expect_err(4, "CNI_NETNS: /etc/hostname is not a network namespace");
    base()
        .env("CNI_NETNS", "/proc/self/ns/mnt")
        .conf(&conf)
        .expect_err(4, "is not a network namespace");
    base()
        .env("CNI_NETNS", "/run/netns/does-not-exist")
        .conf(&conf)
        .expect_err(3, "does not exist");
    base().without("CNI_CONTAINERID").conf(&conf).expect_err(4, "CNI_CONTAINERID: is required");
    base().without("CNI_IFNAME").conf(&conf).expect_err(4, "CNI_IFNAME: is required");
    base().without("CNI_NETNS").conf(&conf).expect_err(4, "CNI_NETNS: is required");
    base().without("CNI_PATH").conf(&conf).expect_err(4, "CNI_PATH: is required");
    base()
        .env("CNI_COMMAND", "PUT")
        .conf(&conf)
        .expect_err(4, "CNI_COMMAND: \"PUT\" is not one of");
    base().env("CNI_ARGS", "IP").conf(&conf).expect_err(4, "CNI_ARGS: \"IP\" is not KEY=VALUE");
    base().env("CNI_ARGS", "IP=not-an-ip").conf(&conf).expect_err(4, "IP=not-an-ip");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn static_address_errors() {
    let (h, _c0, c1, conf) = setup(44);
    let taken = h.reservations("err")[0].clone();
    let before = snapshot(&h, &c1, "err");
    let base = || Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0");
    base()
        .env("CNI_ARGS", &format!("IP={taken}"))
        .conf(&conf)
        .expect_err(101, &format!("{taken} is already reserved by container existing/eth0"));
    base()
        .env("CNI_ARGS", "IP=198.18.44.20")
        .conf(&conf)
        .expect_err(102, "198.18.44.20 is not in any configured range");
    base().env("CNI_ARGS", "IP=198.19.0.5").conf(&conf).expect_err(102, "198.19.0.5");
    base().env("CNI_ARGS", "MAC=01:00:5e:00:00:01").conf(&conf).expect_err(7, "not a unicast MAC");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn exhausted_range_is_code_100_and_reserves_nothing() {
    let (h, _c0, c1, conf) = setup(45);
    let small = with(
        &with(&conf, "ipam.ranges.0.0.rangeStart", json!("198.18.45.100")),
        "ipam.ranges.0.0.rangeEnd",
        json!("198.18.45.100"),
    );
    let before = snapshot(&h, &c1, "err");
    Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0")
        .conf(&small)
        .expect_err(100, "no free address left in 198.18.45.100..198.18.45.100");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn interface_name_taken_in_the_container_rolls_back() {
    let (h, _c0, c1, conf) = setup(46);
    c1.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
    let before = snapshot(&h, &c1, "err");
    Call::new(&h.ns, "ADD", "bad", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(103, "interface \"eth0\" already exists");
    assert_unchanged(&before, &h, &c1, "err");
}

#[test]
fn duplicate_mac_on_the_master_rolls_back_the_reservation() {
    let (h, c0, c1, conf) = setup(47);
    let mac = c0.link("eth0").unwrap()["address"].as_str().unwrap().to_string();
    let before = snapshot(&h, &c1, "err");
    let out = Call::new(&h.ns, "ADD", "dup", &c1.path(), "eth0")
        .env("CNI_ARGS", &format!("MAC={mac}"))
        .conf(&conf);
    assert!(!out.ok, "{}", out.json);
    assert!(out.msg().contains("MAC") || out.msg().contains("mac"), "{}", out.msg());
    assert_unchanged(&before, &h, &c1, "err");
}
