//! `hostReach` on a VF: the container's host traffic takes the host link,
//! whatever the VF's VLAN, and DEL leaves the VF's settings as they were.

use serde_json::json;

use crate::support::nics::Nics;
use crate::support::*;
use crate::*;

/// Removes the address the test gave the PF, also when the test fails.
struct PfAddress<'a>(&'a Nics, String, &'static str);

impl Drop for PfAddress<'_> {
    fn drop(&mut self) {
        let _ = self.0.host.exec(&["ip", "addr", "del", self.2, "dev", &self.1]);
    }
}

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn a_vf_container_with_host_reach_talks_to_its_host_over_the_host_link() {
    let n = Nics::take();
    let [a, _] = n.pfs.clone();
    let (before, vfs_before) = (summaries(&n), host_vfs(&n));
    // The host's address, on the PF, untagged: the VF sits on VLAN 100, so
    // the NIC never carries traffic between the two.
    n.host.ip(&["addr", "add", "198.18.64.1/24", "dev", &a]);
    let _addr = PfAddress(&n, a.clone(), "198.18.64.1/24");
    let c = Netns::new("c");
    let conf = n.conf("hr", "sriov", 64, json!({"pf": a, "vlan": 100, "hostReach": {}}));
    let r = n.call("ADD", "hr1", &c.path()).conf(&conf).expect_ok();
    let ip = result_ip(&r, 0);
    assert_eq!(driver_in(&c, "eth0"), "igbvf");
    let sent = c.tx_packets("hr-eth0");
    let state = || {
        let sysctls = |ns: &Netns| {
            String::from_utf8_lossy(&ns.exec(&["sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/conf/*/accept_local /proc/sys/net/ipv4/ip_forward"]).stdout).into_owned()
        };
        format!(
            "container:\n{}\n{}\n{}\n{}\n{}\nhost:\n{}\n{}\n{}\n{}\n{}",
            c.ip(&["-br", "addr"]),
            c.ip(&["route"]),
            c.ip(&["neigh"]),
            c.ip(&["-s", "link"]),
            sysctls(&c),
            n.host.ip(&["-br", "addr"]),
            n.host.ip(&["route", "get", &ip]),
            n.host.ip(&["neigh"]),
            sysctls(&n.host),
            String::from_utf8_lossy(&n.host.exec(&["nft", "list", "ruleset"]).stdout),
        )
    };
    assert!(reaches(&n.host, &ip), "the host reaches its VF container\n{}", state());
    assert!(reaches(&c, "198.18.64.1"), "the VF container reaches its host\n{}", state());
    assert!(c.tx_packets("hr-eth0") > sent, "…over the host link");
    n.call("CHECK", "hr1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    n.call("DEL", "hr1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert!(c.link_names().is_empty(), "{:?}", c.link_names());
    assert!(!n.host.link_names().iter().any(|l| l.starts_with("nhh")), "{:?}", n.host.link_names());
    assert_eq!(restored(&n, &before), before, "every VF's PF settings are as before");
    assert_eq!(host_vfs(&n), vfs_before, "every VF is back");
    assert!(n.claims("sriov-vfs").is_empty() && n.reservations("hr").is_empty());
}
