//! `hostReach` on a direct datapath (macvlan here; ipvlan and SR-IOV in the
//! kernel lab): two hosts and a server on one LAN (a switch), containers on
//! macvlan. The host reaches its containers and they reach it; a "ClusterIP"
//! written as kube-proxy's nftables mode writes it (DNAT only) in the host,
//! backed by a container on the other host and by the server, is reached with
//! hostReach and not without; a NodePort on the other host too; container ↔
//! container traffic stays on the direct interface.

use nearhost_testkit::agent::{Switch, NET};
use serde_json::{json, Value};

use crate::support::sriov::with_prev;
use crate::support::*;

const SERVICES: &str = "198.18.250.0/24";

struct Lan {
    _sw: Switch,
    hosts: [Netns; 2],
    server: Netns,
    data: [tempfile::TempDir; 2],
}

impl Lan {
    fn new() -> Lan {
        let sw = Switch::new();
        let hosts = [Netns::new("h"), Netns::new("h")];
        sw.plug(&hosts[0], 11);
        sw.plug(&hosts[1], 12);
        let server = Netns::new("s");
        sw.plug(&server, 50);
        // Hosts that forward nothing: hostReach must not need it for host ↔
        // container traffic, and must not turn it on.
        for h in &hosts {
            h.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        }
        Lan {
            _sw: sw,
            hosts,
            server,
            data: [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()],
        }
    }

    /// macvlan on the host's eth0, addresses .100+ (host 1) or .120+ (host 2),
    /// a default route via host 1 (the usual "gateway is the node" setup that
    /// a macvlan container cannot use without hostReach).
    fn conf(&self, host: usize, reach: Option<Value>) -> Value {
        self.conf_of("macvlan", "bridge", host, reach)
    }

    fn conf_of(&self, datapath: &str, mode: &str, host: usize, reach: Option<Value>) -> Value {
        let start = if host == 0 { 100 } else { 120 };
        let ipam = json!({"type": "nearhost", "dataDir": self.data[host].path(),
            "ranges": [[{"subnet": format!("{NET}.0/24"), "rangeStart": format!("{NET}.{start}"),
                         "rangeEnd": format!("{NET}.{}", start + 19), "gateway": format!("{NET}.11")}]],
            "routes": [{"dst": "0.0.0.0/0"}]});
        let mut extra = json!({"master": "eth0", "mode": mode});
        if let Some(r) = reach {
            extra["hostReach"] = r;
        }
        netconf("1.1.0", "reach", datapath, ipam, extra)
    }
}

/// Two ClusterIPs in `host`: 198.18.250.10:80 → `ctr`:8080, 198.18.250.11:80
/// → `server`:8080.
fn cluster_ips(host: &Netns, ctr: &str, server: &str) {
    host.kube_proxy_services(&[
        ("198.18.250.10", 80, ctr, 8080),
        ("198.18.250.11", 80, server, 8080),
    ]);
}

#[test]
fn the_host_its_services_and_nodeports_reach_macvlan_containers_and_pods_stay_direct() {
    let lan = Lan::new();
    let [h1, h2] = &lan.hosts;
    let reach = json!({"serviceCIDRs": [SERVICES]});
    let (a, b, c, d) = (Netns::new("c"), Netns::new("c"), Netns::new("c"), Netns::new("c"));
    let ra = add(h1, "a", &a, &lan.conf(0, Some(reach.clone())));
    let rb = add(h1, "b", &b, &lan.conf(0, Some(json!({}))));
    let rc = add(h2, "c", &c, &lan.conf(1, Some(json!({}))));
    let rd = add(h1, "d", &d, &lan.conf(0, None));
    let (ip_a, ip_b, ip_c, ip_d) =
        (result_ip(&ra, 0), result_ip(&rb, 0), result_ip(&rc, 0), result_ip(&rd, 0));
    let names: Vec<&str> =
        ra["interfaces"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"eth0") && names.contains(&"hr-eth0"),
        "the result lists both links: {ra}"
    );
    assert!(
        a.link_names().contains(&"hr-eth0".to_string())
            && !d.link_names().contains(&"hr-eth0".to_string())
    );

    // Host → container (a kubelet-style probe), and container → host.
    let _sa = serve_http(&a, &ip_a, 8080, "ctr-a");
    let _sd = serve_http(&d, &ip_d, 8080, "ctr-d");
    assert_eq!(
        h1.http_get(&format!("http://{ip_a}:8080/")).as_deref(),
        Some("ctr-a"),
        "host → container with hostReach"
    );
    assert_eq!(
        h1.http_get(&format!("http://{ip_d}:8080/")),
        None,
        "without hostReach the host cannot reach its macvlan container"
    );
    let h1_ip = format!("{NET}.11");
    let _sh = serve_http(h1, &h1_ip, 8081, "host-1");
    assert_eq!(
        a.http_get(&format!("http://{h1_ip}:8081/")).as_deref(),
        Some("host-1"),
        "container → host with hostReach"
    );
    assert_eq!(d.http_get(&format!("http://{h1_ip}:8081/")), None, "without it, no");

    forwarding_only_on_the_host_link(h1);
    forwarding_only_on_the_host_link(h2);

    // A ClusterIP as kube-proxy's nftables mode writes it (DNAT only), in
    // host 1: one Service backed by container c on host 2, one by the server.
    forwarding_node(h1);
    forwarding_node(h2);
    let _sc = serve_http(&c, &ip_c, 8080, "ctr-c");
    let server_ip = format!("{NET}.50");
    let _ss = serve_http(&lan.server, &server_ip, 8080, "lan-server");
    cluster_ips(h1, &ip_c, &server_ip);
    assert_eq!(
        a.http_get("http://198.18.250.10/").as_deref(),
        Some("ctr-c"),
        "ClusterIP → container on the other host"
    );
    assert_eq!(
        a.http_get("http://198.18.250.11/").as_deref(),
        Some("lan-server"),
        "ClusterIP → server on the LAN"
    );
    assert_eq!(
        d.http_get("http://198.18.250.10/"),
        None,
        "without hostReach the Service rules never see the packet"
    );
    assert_eq!(
        b.http_get("http://198.18.250.10/"),
        None,
        "hostReach without serviceCIDRs: no Service route"
    );
    // A NodePort on host 2, backed by its hostReach container c.
    h2.nft(&format!(
        "table ip kube-proxy {{
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local tcp dport 30080 dnat to {ip_c}:8080
  }}
}}
"
    ));
    assert_eq!(
        a.http_get(&format!("http://{NET}.12:30080/")).as_deref(),
        Some("ctr-c"),
        "NodePort on the other host"
    );

    // Container ↔ container stays on the direct interface.
    let (hr0, eth0) = (a.tx_packets("hr-eth0"), a.tx_packets("eth0"));
    for _ in 0..10 {
        assert!(a.ping(&ip_b) && a.ping(&ip_c), "containers reach each other");
    }
    assert!(a.http_get(&format!("http://{ip_c}:8080/")).is_some());
    let (hr1, eth1) = (a.tx_packets("hr-eth0"), a.tx_packets("eth0"));
    assert!(eth1 - eth0 >= 20, "the pings left by eth0 ({eth0} → {eth1})");
    assert!(hr1 - hr0 < 3, "container traffic took the host link ({hr0} → {hr1} packets)");

    // CHECK sees the link and its routes; then a missing host route.
    Call::new(h1, "CHECK", "a", &a.path(), "eth0")
        .conf(&with_prev(&lan.conf(0, Some(reach.clone())), &ra))
        .expect_ok();
    h1.ip(&["route", "del", &format!("{ip_a}/32")]);
    Call::new(h1, "CHECK", "a", &a.path(), "eth0")
        .conf(&with_prev(&lan.conf(0, Some(reach.clone())), &ra))
        .expect_err(106, &format!("host route {ip_a}/32"));

    // DEL removes the host link and its routes.
    for (h, id, ns, conf, r) in [
        (h1, "a", &a, lan.conf(0, Some(reach.clone())), &ra),
        (h1, "b", &b, lan.conf(0, Some(json!({}))), &rb),
        (h2, "c", &c, lan.conf(1, Some(json!({}))), &rc),
        (h1, "d", &d, lan.conf(0, None), &rd),
    ] {
        del(h, id, &ns.path(), &conf, Some(r));
        assert!(
            !ns.link_names().iter().any(|n| n == "eth0" || n == "hr-eth0"),
            "{id}: {:?}",
            ns.link_names()
        );
    }
    for h in [h1, h2] {
        assert!(
            !h.link_names().iter().any(|n| n.starts_with("nhh")),
            "host links left: {:?}",
            h.link_names()
        );
        let routes = h.routes(false);
        assert!(
            !routes.iter().any(|r| [&ip_a, &ip_b, &ip_c].iter().any(|ip| r["dst"] == ***ip)),
            "host routes left: {routes:?}"
        );
    }
    assert!(lan.data[0].path().join("reach/state.json").exists());
    assert!(reservations_in(lan.data[0].path(), "reach").is_empty());
}

#[test]
fn bad_host_reach_options_are_refused_and_leave_nothing() {
    let lan = Lan::new();
    let h1 = &lan.hosts[0];
    let c = Netns::new("c");
    let before = (h1.link_names(), c.link_names());
    for (conf, says) in [
        (
            lan.conf(0, Some(json!({"serviceCIDRs": [format!("{NET}.0/25")]}))),
            "hostReach.serviceCIDRs[0]: 198.18.200.0/25 contains the container's address",
        ),
        (
            lan.conf(0, Some(json!({"hostCIDRs": ["198.18.0.0/15"]}))),
            "hostReach.hostCIDRs[0]: 198.18.0.0/15 contains",
        ),
        (
            lan.conf(0, Some(json!({"serviceCIDRs": ["nonsense"]}))),
            "hostReach.serviceCIDRs[0]: \"nonsense\" is not a CIDR",
        ),
        (lan.conf(0, Some(json!(["10.96.0.0/12"]))), "hostReach: expected an object"),
    ] {
        Call::new(h1, "ADD", "bad", &c.path(), "eth0").conf(&conf).expect_err(7, says);
        assert_eq!((h1.link_names(), c.link_names()), before, "{says}: links changed");
        assert!(
            reservations_in(lan.data[0].path(), "reach").is_empty(),
            "{says}: an address stayed reserved"
        );
    }
    let mut routed = lan.conf(0, Some(json!({})));
    routed["datapath"] = json!("routed");
    routed.as_object_mut().unwrap().remove("master");
    Call::new(h1, "ADD", "bad", &c.path(), "eth0")
        .conf(&routed)
        .expect_err(7, "hostReach: is for the datapaths that bypass the host");
}

/// The host ↔ container and Service checks on another direct datapath.
fn host_and_services_reach(datapath: &str, mode: &str) {
    let lan = Lan::new();
    let h1 = &lan.hosts[0];
    let reach = json!({"serviceCIDRs": [SERVICES]});
    let (a, d) = (Netns::new("c"), Netns::new("c"));
    let (conf_a, conf_d) =
        (lan.conf_of(datapath, mode, 0, Some(reach)), lan.conf_of(datapath, mode, 0, None));
    let ra = add(h1, "a", &a, &conf_a);
    let rd = add(h1, "d", &d, &conf_d);
    let (ip_a, ip_d) = (result_ip(&ra, 0), result_ip(&rd, 0));
    let _sa = serve_http(&a, &ip_a, 8080, "ctr-a");
    let _sd = serve_http(&d, &ip_d, 8080, "ctr-d");
    assert_eq!(
        h1.http_get(&format!("http://{ip_a}:8080/")).as_deref(),
        Some("ctr-a"),
        "{datapath} {mode}: host → container"
    );
    assert_eq!(
        h1.http_get(&format!("http://{ip_d}:8080/")),
        None,
        "{datapath} {mode}: the host cannot reach it without hostReach"
    );
    let h1_ip = format!("{NET}.11");
    let _sh = serve_http(h1, &h1_ip, 8081, "host-1");
    assert_eq!(
        a.http_get(&format!("http://{h1_ip}:8081/")).as_deref(),
        Some("host-1"),
        "{datapath} {mode}: container → host"
    );
    forwarding_only_on_the_host_link(h1);
    forwarding_node(h1);
    let server_ip = format!("{NET}.50");
    let _ss = serve_http(&lan.server, &server_ip, 8080, "lan-server");
    cluster_ips(h1, "198.18.200.200", &server_ip);
    assert_eq!(
        a.http_get("http://198.18.250.11/").as_deref(),
        Some("lan-server"),
        "{datapath} {mode}: ClusterIP"
    );
    assert_eq!(
        d.http_get("http://198.18.250.11/"),
        None,
        "{datapath} {mode}: no ClusterIP without hostReach"
    );
    Call::new(h1, "CHECK", "a", &a.path(), "eth0").conf(&with_prev(&conf_a, &ra)).expect_ok();
    del(h1, "a", &a.path(), &conf_a, Some(&ra));
    del(h1, "d", &d.path(), &conf_d, Some(&rd));
    assert!(!h1.link_names().iter().any(|n| n.starts_with("nhh")), "{:?}", h1.link_names());
    assert!(a.link_names().is_empty(), "{:?}", a.link_names());
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn host_reach_on_ipvlan_l2() {
    host_and_services_reach("ipvlan", "l2");
}

#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn host_reach_on_ipvlan_l3s() {
    host_and_services_reach("ipvlan", "l3s");
}

/// What a Kubernetes node has (kube-proxy requires it): the host forwards, so
/// a Service's reply arriving by the uplink goes on to the container.
fn forwarding_node(h: &Netns) {
    let out = h.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(out.status.success());
}

/// hostReach turned forwarding on for its own link and nothing else.
fn forwarding_only_on_the_host_link(h: &Netns) {
    assert_eq!(h.sysctl("net.ipv4.ip_forward"), "0", "hostReach changed the host's ip_forward");
    for l in h.link_names().iter().filter(|l| l.starts_with("nhh")) {
        assert_eq!(h.sysctl(&format!("net.ipv4.conf.{l}.forwarding")), "1", "{l}");
    }
    assert_eq!(h.sysctl("net.ipv4.conf.eth0.forwarding"), "0");
}

/// On a stand-in VF (crates/testkit/src/sriov.rs): the device is moved in,
/// not created, and the host link is added beside it.
#[test]
fn host_reach_on_a_moved_vf() {
    let w = crate::support::sriov::Wire::new(125);
    w.pf("pf0", 0x25, 2);
    w.host.ip(&["addr", "add", "198.18.125.2/24", "dev", "pf0"]);
    let c = Netns::new("c");
    let conf = w.conf("hr", "sriov", json!({"pf": "pf0", "hostReach": {}}));
    let r = w.call("ADD", "hr1", &c.path()).conf(&conf).expect_ok();
    let ip = result_ip(&r, 0);
    assert!(w.host.ping(&ip), "the host reaches its VF container");
    assert!(c.ping("198.18.125.2"), "the VF container reaches its host");
    w.call("CHECK", "hr1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    w.call("DEL", "hr1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert!(c.link_names().is_empty(), "{:?}", c.link_names());
    assert!(!w.host.link_names().iter().any(|l| l.starts_with("nhh")));
}
