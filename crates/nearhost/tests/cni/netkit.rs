//! netkit (Linux ≥ 6.7, when built): this machine's kernel has none (the
//! refusal is tested here), the kernel lab's 6.12 has it, its 6.1 not.

use serde_json::{json, Value};

use crate::support::*;

const LAB: &str = "netkit runs in the kernel lab's Linux 6.12 (scripts/kernel-lab)";

fn conf(h: &Host) -> Value {
    let net = h.net;
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(), "ranges": [
        [{"subnet": format!("198.19.{net}.0/24")}],
        [{"subnet": format!("2001:2:{net}:1::/64")}]]});
    netconf("1.1.0", "nk", "netkit", ipam, json!({}))
}

/// The refusal, where the kernel has no netkit: code 104 naming the kernel.
fn refused(h: &Host, ctr: &Netns) {
    Call::new(&h.ns, "ADD", "n0", &ctr.path(), "eth0")
        .conf(&conf(h))
        .expect_err(104, "netkit needs Linux 6.7 or later");
    assert!(h.reservations("nk").is_empty(), "the addresses were released");
    assert!(ctr.link_names().is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

#[test]
fn on_a_kernel_without_netkit_add_is_refused_and_changes_nothing() {
    assert!(!kernel_has("netkit"), "this kernel has netkit: the refusal cannot be observed here");
    let h = Host::new(35);
    refused(&h, &Netns::new("c"));
}

#[test]
#[ignore = "needs netkit: runs in the kernel lab (scripts/kernel-lab)"]
fn netkit_containers_reach_each_other_the_host_and_the_outside() {
    let h = Host::new(35);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    if !kernel_at_least(6, 7) {
        // The lab's oldest kernel: the same refusal as on a kernel built without it.
        return refused(&h, &c1);
    }
    assert!(kernel_has("netkit"), "{LAB}");
    let conf = conf(&h);
    let r1 = add(&h.ns, "n1", &c1, &conf);
    let r2 = add(&h.ns, "n2", &c2, &conf);
    let (ip1, ip2) = (result_ip(&r1, 0), result_ip(&r2, 0));
    assert_eq!(r1["ips"][0]["address"], format!("{ip1}/32"));
    assert!(r1["ips"][0].get("gateway").is_none(), "no gateway on an L3 device: {r1}");
    assert!(r1["interfaces"][1].get("mac").is_none(), "no MAC on an L3 device: {r1}");
    let host_end = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let kinds: Vec<String> =
        h.ns.links()
            .iter()
            .filter(|l| l["ifname"] == host_end.as_str())
            .map(|l| l["linkinfo"]["info_kind"].as_str().unwrap_or("").to_string())
            .collect();
    assert_eq!(kinds, vec!["netkit"], "the host end is a netkit device");
    let routes = c1.routes(false);
    assert!(routes.iter().any(|r| r["dst"] == "default" && r["dev"] == "eth0"), "{routes:?}");

    assert!(c1.ping(&ip2), "container to container through the host");
    assert!(c1.ping(&h.v4(2)), "container to the host's own address");
    assert!(h.ns.ping(&ip1), "host to container");
    assert!(c2.ping(&result_ip(&r1, 1)), "IPv6 container to container");
    h.gw.ip(&["route", "add", "198.19.35.0/24", "via", &h.v4(2)]);
    assert!(h.gw.ping(&ip1), "outside to container via a host-gw route");
    let _s = serve_http(&c2, &ip2, 8080, "netkit-2");
    assert_eq!(c1.http_get(&format!("http://{ip2}:8080/")).as_deref(), Some("netkit-2"));
    check(&h.ns, "n1", &c1, &conf, &r1).expect_ok();

    // A MAC is refused by name: an L3 netkit device has none.
    let c3 = Netns::new("c");
    Call::new(&h.ns, "ADD", "n3", &c3.path(), "eth0")
        .env("CNI_ARGS", "MAC=02:00:00:00:00:03")
        .conf(&conf)
        .expect_err(7, "no MAC");
    assert!(c3.link_names().is_empty());

    del(&h.ns, "n1", &c1.path(), &conf, Some(&r1));
    assert!(h.ns.routes(false).iter().all(|r| r["dst"] != ip1.as_str()), "host route left behind");
    del(&h.ns, "n2", &c2.path(), &conf, Some(&r2));
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
    assert!(h.reservations("nk").is_empty());
}
