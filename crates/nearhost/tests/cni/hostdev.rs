//! hostdev with a veth end standing in for the hot-plugged NIC (a cloud ENI):
//! moving, renaming, addressing and restoring are real kernel operations; the
//! NIC's PCI address comes from a fake sysfs tree (NEARHOST_SYSFS_ROOT).

use serde_json::{json, Value};

use crate::support::sriov::{with_prev, Wire};
use crate::support::*;

/// A NIC `name` in the host, cabled to the switch, with an address, a route
/// through it and MTU 1450 — what DEL must give back.
fn nic(w: &Wire, name: &str, last: u8) {
    w.cable(name, &format!("{name}s"));
    w.host.ip(&["link", "set", name, "mtu", "1450", "up"]);
    w.host.ip(&["addr", "add", &format!("{}/24", w.v4(last)), "dev", name]);
    w.host.ip(&["route", "add", &format!("198.19.{last}.0/24"), "via", &w.v4(1), "dev", name]);
}

/// (mtu, up, addresses, routes through it) of a host interface.
fn host_view(w: &Wire, name: &str) -> (u64, bool, Vec<String>, Vec<String>) {
    let l = w.host.link(name).unwrap_or_else(|| panic!("{name} is not in the host namespace"));
    let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    let routes: Vec<String> = w
        .host
        .routes(false)
        .iter()
        .filter(|r| r["dev"] == name && r["protocol"] != "kernel")
        .map(|r| {
            format!("{} via {}", r["dst"].as_str().unwrap(), r["gateway"].as_str().unwrap_or("-"))
        })
        .collect();
    (l["mtu"].as_u64().unwrap(), up, w.host.addrs(name), routes)
}

#[test]
fn add_check_del_move_a_nic_in_and_back() {
    let w = Wire::new(120);
    nic(&w, "eni1", 50);
    let before = host_view(&w, "eni1");
    assert_eq!(before.3, vec!["198.19.50.0/24 via 198.18.120.1"]);
    let c1 = Netns::new("c");
    let conf = w.conf("hd", "hostdev", json!({"device": "eni1"}));
    let r = w.call("ADD", "h1", &c1.path()).conf(&conf).expect_ok();
    assert!(w.host.link("eni1").is_none(), "the NIC left the host");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["interfaces"][0]["mtu"], 1450);
    assert_eq!(c1.addrs("eth0"), vec![format!("{}/24", result_ip(&r, 0))]);
    assert!(c1.ping(&w.v4(1)), "the container reaches the gateway through the NIC");
    w.call("CHECK", "h1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();

    w.call("DEL", "h1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert!(c1.link_names().is_empty());
    assert_eq!(host_view(&w, "eni1"), before, "name, MTU, up state, address and route restored");
    w.call("DEL", "h1", &c1.path()).conf(&conf).expect_ok();
    w.call("DEL", "h1", "").conf(&conf).expect_ok();
    assert!(w.reservations("hd").is_empty());
}

/// A device coming home may carry its host name as an alternative name: udev
/// gives a NIC its predictable name as one when it returns to the initial
/// namespace (seen with igb VFs whose container died), and a container with
/// NET_ADMIN can add one. DEL drops that altname of the device itself and
/// takes the name back.
#[test]
fn del_takes_the_name_back_from_the_devices_own_altname() {
    let w = Wire::new(122);
    nic(&w, "eni4", 53);
    let before = host_view(&w, "eni4");
    let c1 = Netns::new("c");
    let conf = w.conf("an", "hostdev", json!({"device": "eni4"}));
    let r = w.call("ADD", "a1", &c1.path()).conf(&conf).expect_ok();
    c1.ip(&["link", "property", "add", "dev", "eth0", "altname", "eni4"]);
    w.call("DEL", "a1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert_eq!(host_view(&w, "eni4"), before);
    let back = w.host.link("eni4").unwrap();
    assert!(back["altnames"].is_null(), "the altname is gone: {back}");
}

#[test]
fn selects_by_hwaddr_and_by_pci_bus_id() {
    let w = Wire::new(121);
    nic(&w, "eni2", 51);
    nic(&w, "eni3", 52);
    w.pci_device("0000:5e:00.1", "eni3");
    let mac = w.host.link("eni2").unwrap()["address"].as_str().unwrap().to_uppercase();
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let by_mac = w.conf("sel", "hostdev", json!({"hwaddr": mac, "mtu": 1400}));
    let by_pci = w.conf("sel", "hostdev", json!({"pciBusID": "0000:5E:00.1"}));
    let r1 = w.call("ADD", "m1", &c1.path()).conf(&by_mac).expect_ok();
    let r2 = w.call("ADD", "p1", &c2.path()).conf(&by_pci).expect_ok();
    assert_eq!(c1.link("eth0").unwrap()["address"].as_str().unwrap().to_uppercase(), mac);
    assert_eq!(c1.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(r2["interfaces"][0]["pciID"], "0000:5e:00.1");
    assert!(w.host.link("eni2").is_none() && w.host.link("eni3").is_none());
    w.call("DEL", "m1", &c1.path()).conf(&with_prev(&by_mac, &r1)).expect_ok();
    w.call("DEL", "p1", &c2.path()).conf(&with_prev(&by_pci, &r2)).expect_ok();
    assert_eq!(host_view(&w, "eni2").0, 1450, "MTU restored");
    assert!(w.host.link("eni3").is_some());
    let missing = w.conf("sel", "hostdev", json!({"pciBusID": "0000:5e:00.7"}));
    w.call("ADD", "p2", &c2.path())
        .conf(&missing)
        .expect_err(7, "pciBusID: PCI device 0000:5e:00.7 has no network interface");
}

#[test]
fn the_default_route_nic_is_refused_unless_allowed() {
    let h = Host::new(122);
    let c1 = Netns::new("c");
    let conf = netconf("1.1.0", "dr", "hostdev", h.ipam_v4(), json!({"device": "eth0"}));
    let call = |cmd: &str, conf: &Value| {
        Call::new(&h.ns, cmd, "d1", &c1.path(), "eth0")
            .env("NEARHOST_CLAIMS_DIR", &h.data_dir())
            .conf(conf)
    };
    call("ADD", &conf).expect_err(7, "device: eth0 carries the host's default route");
    let mac = h.ns.link("eth0").unwrap()["address"].as_str().unwrap().to_string();
    let by_mac = netconf("1.1.0", "dr", "hostdev", h.ipam_v4(), json!({"hwaddr": mac}));
    call("ADD", &by_mac).expect_err(7, "hwaddr: eth0 carries the host's default route");
    assert!(
        h.reservations("dr").is_empty()
            && h.ns.link("eth0").is_some()
            && c1.link_names().is_empty()
    );

    let mut allowed = conf.clone();
    allowed["allowDefaultRoute"] = json!(true);
    let r = call("ADD", &allowed).expect_ok();
    assert!(c1.ping(&h.v4(1)), "the moved NIC works in the container");
    assert!(
        h.ns.routes(false).iter().all(|r| r["dst"] != "default"),
        "the host lost its default route with the NIC"
    );
    call("DEL", &with_prev(&allowed, &r)).expect_ok();
    assert_eq!(h.ns.addrs("eth0"), vec![format!("{}/24", h.v4(2))]);
    let routes = h.ns.routes(false);
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == h.v4(1) && r["dev"] == "eth0"),
        "{routes:?}"
    );
}

/// When the container's namespace dies, the kernel returns a physical NIC to
/// the initial namespace (as `devN` if its name is taken). A veth stand-in dies
/// instead, so the test plays the kernel's part: it moves the NIC into the host
/// under the name the kernel would give, with the fake sysfs saying so. DEL
/// must find it by PCI address and give it back its name, MTU and address.
#[test]
fn del_after_the_namespace_is_gone_finds_the_nic_by_pci_address() {
    let w = Wire::new(123);
    nic(&w, "eni4", 53);
    w.pci_device("0000:5f:00.0", "eni4");
    let before = host_view(&w, "eni4");
    let c1 = Netns::new("c");
    let path = c1.path();
    let conf = w.conf("gn", "hostdev", json!({"pciBusID": "0000:5f:00.0"}));
    let r = w.call("ADD", "g1", &path).conf(&conf).expect_ok();
    c1.ip(&["link", "set", "eth0", "netns", &w.host.name, "name", "dev9"]);
    w.set_netdev("0000:5f:00.0", "dev9");
    drop(c1);
    w.call("DEL", "g1", &path).conf(&with_prev(&conf, &r)).expect_ok();
    assert!(w.host.link("dev9").is_none(), "found by PCI address and renamed");
    assert_eq!(host_view(&w, "eni4"), before);
    w.call("DEL", "g1", &path).conf(&with_prev(&conf, &r)).expect_ok();
    assert!(w.reservations("gn").is_empty());
}

#[test]
fn a_failed_add_puts_the_nic_back() {
    let w = Wire::new(124);
    nic(&w, "eni5", 54);
    let before = host_view(&w, "eni5");
    let c1 = Netns::new("c");
    let mut conf = w.conf("fa", "hostdev", json!({"device": "eni5"}));
    conf["ipam"]["routes"] = json!([{"dst": "198.19.200.0/24", "gw": "198.19.99.99"}]);
    w.call("ADD", "f1", &c1.path()).conf(&conf).expect_err(105, "198.19.200.0/24");
    assert_eq!(host_view(&w, "eni5"), before);
    assert!(c1.link_names().is_empty() && w.reservations("fa").is_empty());
    let again = w.conf("fa", "hostdev", json!({"device": "eni5"}));
    let r = w.call("ADD", "f1", &c1.path()).conf(&again).expect_ok();
    w.call("DEL", "f1", &c1.path()).conf(&with_prev(&again, &r)).expect_ok();
}

/// A container with NET_ADMIN renames the NIC and puts a veth of its own under
/// its name. DEL must give the host's name, addresses and routes back to the
/// NIC (found by its index in the container), never to the look-alike.
#[test]
fn del_gives_the_host_addressing_to_the_nic_not_a_look_alike() {
    let w = Wire::new(142);
    nic(&w, "eni6", 55);
    let before = host_view(&w, "eni6");
    let index = w.host.link("eni6").unwrap()["ifindex"].clone();
    let c1 = Netns::new("c");
    let conf = w.conf("hl", "hostdev", json!({"device": "eni6"}));
    let r = w.call("ADD", "l1", &c1.path()).conf(&conf).expect_ok();
    c1.ip(&["link", "set", "eth0", "down"]);
    c1.ip(&["link", "set", "eth0", "name", "hid0"]);
    c1.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    w.call("DEL", "l1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert_eq!(c1.link_names(), vec!["eth0", "eth0p"], "the look-alike stays in the container");
    assert_eq!(w.host.link("eni6").expect("eni6 is back")["ifindex"], index, "it is the NIC");
    assert_eq!(host_view(&w, "eni6"), before, "name, MTU, up state, address and route restored");
}

/// NIC claims are node-wide, and CNI GC releases the claim of an attachment the
/// runtime no longer lists: while network `hg` holds the NIC, network `hb`
/// cannot take it, even once it is back in the host; GC gives it back its name,
/// MTU and address.
#[test]
fn gc_gives_back_the_nic_of_an_attachment_that_is_gone() {
    let w = Wire::new(145);
    nic(&w, "eni7", 56);
    w.pci_device("0000:60:00.0", "eni7");
    let before = host_view(&w, "eni7");
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = w.conf("hg", "hostdev", json!({"pciBusID": "0000:60:00.0"}));
    w.call("ADD", "h1", &c1.path()).conf(&conf).expect_ok();
    assert_eq!(w.claims_of("hostdev", "hg").len(), 1);
    // The kernel's part when c1 dies: the NIC back in the host, as dev8.
    c1.ip(&["link", "set", "eth0", "netns", &w.host.name, "name", "dev8"]);
    w.set_netdev("0000:60:00.0", "dev8");
    drop(c1);
    let other = w.conf("hb", "hostdev", json!({"pciBusID": "0000:60:00.0"}));
    w.call("ADD", "h2", &c2.path())
        .conf(&other)
        .expect_err(11, "dev8 is claimed by container h1 (eth0)");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    w.call("GC", "", "").conf(&gc).expect_ok();
    assert_eq!(host_view(&w, "eni7"), before, "name, MTU, up state, address and route restored");
    assert!(w.claims_of("hostdev", "hg").is_empty());
}
