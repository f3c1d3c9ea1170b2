use serde_json::json;

use crate::support::*;

fn conf(h: &Host, dual: bool) -> serde_json::Value {
    let net = h.net;
    let mut ranges = vec![json!([{"subnet": format!("198.19.{net}.0/24")}])];
    if dual {
        ranges.push(json!([{"subnet": format!("2001:2:{net}:1::/64")}]));
    }
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(), "ranges": ranges});
    netconf("1.1.0", "rt", "routed", ipam, json!({}))
}

#[test]
fn containers_reach_each_other_the_host_and_the_outside_through_host_routes() {
    let h = Host::new(30);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, true);
    let r1 = add(&h.ns, "r1", &c1, &conf);
    let r2 = add(&h.ns, "r2", &c2, &conf);
    let (ip1, ip2) = (result_ip(&r1, 0), result_ip(&r2, 0));
    assert_eq!(r1["ips"][0]["address"], format!("{ip1}/32"));
    assert_eq!(r1["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(c1.addrs("eth0").len(), 2);
    let routes = c1.routes(false);
    assert!(
        routes.iter().any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1"),
        "{routes:?}"
    );
    let host_veth = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let host_routes = h.ns.routes(false);
    assert!(
        host_routes.iter().any(|r| r["dst"] == ip1 && r["dev"] == host_veth),
        "{host_routes:?}"
    );
    // No bridge anywhere: routed has no L2 domain.
    assert!(h.ns.links().iter().all(|l| l["linkinfo"]["info_kind"] != "bridge"));
    // The pinned gateway neighbour: no ARP for the next hop.
    let neigh = c1.ip(&["neigh", "show", "169.254.1.1"]);
    assert!(neigh.contains("PERMANENT"), "{neigh}");

    assert!(c1.ping(&ip2), "container to container through the host");
    assert!(c1.ping(&h.v4(2)), "container to the host's own address");
    assert!(c2.ping(&result_ip(&r1, 1)), "IPv6 container to container");
    // host-gw: the outside routes the container subnet via the host.
    h.gw.ip(&["route", "add", "198.19.30.0/24", "via", &h.v4(2)]);
    assert!(h.gw.ping(&ip1), "outside to container via a host-gw route");
    check(&h.ns, "r1", &c1, &conf, &r1).expect_ok();

    del(&h.ns, "r1", &c1.path(), &conf, Some(&r1));
    assert!(h.ns.routes(false).iter().all(|r| r["dst"] != ip1), "host route left behind");
    del(&h.ns, "r1", "", &conf, None);
    del(&h.ns, "r2", &c2.path(), &conf, Some(&r2));
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
    assert!(h.reservations("rt").is_empty());
}

/// An IPv6 ADD turns forwarding on for the interface nearhost owns
/// (`force_forwarding` on the host end of the veth), never for the whole host:
/// `net.ipv6.conf.all.forwarding=1` switches every interface to router mode,
/// which stops RA processing where accept_ra=1 — the host could lose its
/// RA-learned default route.
#[test]
fn ipv6_forwarding_is_turned_on_per_interface_not_for_the_host() {
    // Linux 6.17 forwards per interface (force_forwarding); before it (the
    // kernel lab's 6.1) only all.forwarding can, and RA learning is kept with
    // accept_ra=2. Either way the host's uplink keeps learning from RAs.
    let per_iface = std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists();
    let h = Host::new(31);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, true);
    assert_eq!(h.ns.sysctl("net.ipv6.conf.eth0.accept_ra"), "1");
    let r1 = add(&h.ns, "f1", &c1, &conf);
    let r2 = add(&h.ns, "f2", &c2, &conf);
    if per_iface {
        assert_eq!(h.ns.sysctl("net.ipv6.conf.all.forwarding"), "0", "global forwarding untouched");
        assert_eq!(h.ns.sysctl("net.ipv6.conf.eth0.forwarding"), "0", "the uplink stays a host");
        assert_eq!(h.ns.sysctl("net.ipv6.conf.eth0.accept_ra"), "1");
        for r in [&r1, &r2] {
            let veth = r["interfaces"][0]["name"].as_str().unwrap();
            assert_eq!(h.ns.sysctl(&format!("net.ipv6.conf.{veth}.force_forwarding")), "1");
        }
    } else {
        assert_eq!(h.ns.sysctl("net.ipv6.conf.all.forwarding"), "1");
        assert_eq!(
            h.ns.sysctl("net.ipv6.conf.eth0.accept_ra"),
            "2",
            "RAs still learned as a router"
        );
    }
    assert!(c2.ping(&result_ip(&r1, 1)), "IPv6 container to container is forwarded");
    assert!(c1.ping(&result_ip(&r2, 1)));
    del(&h.ns, "f1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "f2", &c2.path(), &conf, Some(&r2));
}

/// The container pins its next hop's MAC, so the host end must keep the MAC
/// it had when it was pinned. udev's MACAddressPolicy=persistent rewrites a
/// veth's kernel-chosen random MAC some time after creation (the kernel lab's
/// guests run udevd; that is how the lab found it); a MAC given at creation
/// is "set" (addr_assign_type 3), which udev leaves alone.
#[test]
fn the_host_end_keeps_the_mac_the_container_pinned() {
    let h = Host::new(132);
    let c = Netns::new("c");
    let conf = netconf("1.1.0", "pin", "routed", h.ipam_v4(), json!({}));
    let r = add(&h.ns, "pin", &c, &conf);
    let host_end = r["interfaces"][0]["name"].as_str().expect("the host end").to_string();
    let assign = h.ns.exec(&["cat", &format!("/sys/class/net/{host_end}/addr_assign_type")]);
    assert_eq!(
        String::from_utf8_lossy(&assign.stdout).trim(),
        "3",
        "{host_end}'s MAC is set (3), not random (1): udev would rewrite a random one"
    );
    let mac = h.ns.link(&host_end).expect("the host end")["address"].clone();
    let neigh: serde_json::Value =
        serde_json::from_str(&c.ip(&["-j", "neigh", "show", "169.254.1.1"])).unwrap();
    assert_eq!(neigh[0]["lladdr"], mac, "the pinned next hop is the host end's MAC");
    assert!(h.ns.ping(&result_ip(&r, 0)), "the host reaches the container");
    del(&h.ns, "pin", &c.path(), &conf, Some(&r));
}
