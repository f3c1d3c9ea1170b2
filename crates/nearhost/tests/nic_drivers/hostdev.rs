//! hostdev on igb: a whole NIC (a cloud ENI's shape) selected by its PCI
//! address, moved into a container and back with its name, MTU and addresses.

use serde_json::json;

use crate::support::nics::Nics;
use crate::support::*;
use crate::*;

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn hostdev_moves_an_igb_nic_by_pci_address_and_back() {
    let n = Nics::take();
    let nic = n.nic.clone();
    must("ip", &["link", "set", &nic, "mtu", "1400"]);
    must("ip", &["addr", "add", "198.18.68.9/24", "dev", &nic]);
    let view = |name: &str| {
        let l = n.link(name).unwrap_or_else(|| panic!("{name} is not in the host"));
        (l["mtu"].clone(), l["address"].clone(), n.host.addrs(name))
    };
    let before = view(&nic);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = n.conf("hd", "hostdev", 68, json!({"pciBusID": n.nic_pci}));
    let r = n.call("ADD", "h1", &c1.path()).conf(&conf).expect_ok();
    assert!(n.link(&nic).is_none(), "{nic} left the host");
    assert_eq!(r["interfaces"][0]["pciID"], n.nic_pci.as_str());
    assert_eq!(driver_in(&c1, "eth0"), "igb");
    assert_eq!(c1.link("eth0").unwrap()["mtu"], 1400);
    // A VF of PF a (no VLAN) as the peer, across the hub.
    let peer_conf = n.conf("hd", "sriov", 68, json!({"pf": n.pfs[0]}));
    let rp = n.call("ADD", "h2", &c2.path()).conf(&peer_conf).expect_ok();
    assert!(reaches(&c1, &result_ip(&rp, 0)), "the moved NIC reaches a VF over the hub");
    n.call("CHECK", "h1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();

    n.call("DEL", "h1", &c1.path()).conf(&with_prev(&conf, &r)).expect_ok();
    n.call("DEL", "h2", &c2.path()).conf(&with_prev(&peer_conf, &rp)).expect_ok();
    let after = view(&nic);
    must("ip", &["addr", "del", "198.18.68.9/24", "dev", &nic]);
    must("ip", &["link", "set", &nic, "mtu", "1500"]);
    assert_eq!(after, before, "{nic} is back with its name, MTU, MAC and addresses");
    assert!(n.claims("hostdev").is_empty() && n.reservations("hd").is_empty());
}
