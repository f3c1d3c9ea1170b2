//! `routed` with BPF host routing (`"bpf"`): tcx programs on the pods' veths
//! and the host's uplink hand pod-bound TCP/UDP straight to the pod's veth
//! peer; everything else (the host, Services, NodePorts, ICMP) goes through
//! the host stack. Counted by the programs' own statistics, read with Debian's
//! bpftool from the pinned map; attachments read with `bpftool net`.

use std::thread;

use nearhost_testkit::agent::{Switch, NET};
use serde_json::{json, Value};

use crate::support::*;

fn conf(h: &Host, fs: &BpfFs, bpf: Value) -> Value {
    let net = h.net;
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(), "ranges": [
        [{"subnet": format!("198.19.{net}.0/24")}],
        [{"subnet": format!("2001:2:{net}:1::/64")}]]});
    let mut bpf = bpf;
    if bpf.get("pinPath").is_none() {
        bpf["pinPath"] = json!(fs.pin_path());
    }
    netconf("1.1.0", "rb", "routed", ipam, json!({ "bpf": bpf }))
}

/// Whether this kernel has tcx (Linux 6.6+). Without it (the kernel lab's
/// 6.1) an ADD with "bpf" must be refused before anything is made.
fn refused_without_tcx(h: &Host, fs: &BpfFs, conf: &Value, ctr: &Netns) -> bool {
    refused_without_tcx_on(&h.ns, fs, conf, ctr)
}

fn refused_without_tcx_on(host: &Netns, fs: &BpfFs, conf: &Value, ctr: &Netns) -> bool {
    if kernel_at_least(6, 6) {
        return false;
    }
    Call::new(host, "ADD", "old", &ctr.path(), "eth0")
        .conf(conf)
        .expect_err(104, "needs Linux 6.6");
    assert_eq!(ctr.link_names(), Vec::<String>::new());
    assert_eq!(host.link_names(), vec!["eth0"]);
    assert_eq!(fs.pins(), Vec::<String>::new());
    true
}

/// The one host directory under the pin root (`net-INODE`).
fn host_dir(fs: &BpfFs) -> String {
    let dirs: Vec<String> = fs.pins().into_iter().filter(|p| !p.contains('/')).collect();
    assert_eq!(dirs.len(), 1, "one pinned set per host namespace: {dirs:?}");
    format!("{}/{}", fs.pin_path(), dirs[0])
}

/// `nearhost bpf status --json` in the host namespace.
fn status(ns: &Netns, fs: &BpfFs) -> Value {
    let out = ns.exec(&[bin(), "bpf", "status", "--json", "--pin-path", &fs.pin_path()]);
    assert!(out.status.success(), "bpf status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bpf status --json")
}

/// The programs' counters, read by Debian's bpftool from the pinned map
/// (summed over CPUs) and checked against `nearhost bpf status`.
fn stats(ns: &Netns, fs: &BpfFs) -> Vec<u64> {
    let out =
        must("bpftool", &["-j", "map", "dump", "pinned", &format!("{}/nh_stats", host_dir(fs))]);
    let v: Value = serde_json::from_str(&out).expect("bpftool -j map dump");
    let mut sums = vec![0u64; 6];
    for entry in v.as_array().expect("a list of entries") {
        // With BTF, bpftool puts the typed view under "formatted".
        let e = entry.get("formatted").unwrap_or(entry);
        let key = e["key"].as_u64().expect("key") as usize;
        sums[key] = e["values"]
            .as_array()
            .expect("per-CPU values")
            .iter()
            .map(|c| c["value"].as_u64().expect("a counter"))
            .sum();
    }
    let ours = &status(ns, fs)["stats"];
    assert!(
        ours["from_pod_to_pod"].as_u64().unwrap() >= sums[FROM_POD_TO_POD],
        "{ours} vs {sums:?}"
    );
    sums
}
const FROM_POD_TO_POD: usize = 0;
const FROM_UPLINK_TO_POD: usize = 1;
const STACK_NAT_FLOW: usize = 3;
const FROM_POD_TO_REMOTE: usize = 5;

/// A NodePort as kube-proxy's nftables mode DNATs it: port 30080 on every
/// address of `host` to `backend`:8080.
fn nodeport(host: &Netns, backend: &str) {
    host.nft(&format!(
        "table ip nodeport {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n    \
         tcp dport 30080 dnat to {backend}:8080\n  }}\n}}\n"
    ));
}

/// `(device, program)` for each tcx ingress attachment in the host namespace.
fn tcx(ns: &Netns, fs: &BpfFs) -> Vec<(String, String)> {
    let st = status(ns, fs);
    let mut found = Vec::new();
    for a in st["attached"].as_array().expect("attached") {
        for p in a[1].as_array().expect("programs") {
            found.push((a[0].as_str().unwrap().to_string(), p.as_str().unwrap().to_string()));
        }
    }
    found
}

#[test]
fn pods_talk_through_the_fast_path_and_services_nodeports_and_the_host_through_the_stack() {
    let fs = BpfFs::new();
    let h = Host::new(32);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, &fs, json!({}));
    if refused_without_tcx(&h, &fs, &conf, &c1) {
        return;
    }
    let r1 = add(&h.ns, "b1", &c1, &conf);
    let r2 = add(&h.ns, "b2", &c2, &conf);
    let (ip2, ip2v6) = (result_ip(&r2, 0), result_ip(&r2, 1));
    let (veth1, veth2) = (
        r1["interfaces"][0]["name"].as_str().unwrap().to_string(),
        r2["interfaces"][0]["name"].as_str().unwrap().to_string(),
    );
    let attached = tcx(&h.ns, &fs);
    for (dev, prog) in
        [(&veth1, "nh_from_pod"), (&veth2, "nh_from_pod"), (&"eth0".to_string(), "nh_from_uplink")]
    {
        assert!(
            attached.contains(&(dev.clone(), prog.to_string())),
            "{prog} on {dev}: {attached:?}"
        );
    }
    check(&h.ns, "b1", &c1, &conf, &r1).expect_ok();

    // Pod → pod, TCP over IPv4 and IPv6: redirected both ways.
    let _s4 = serve_http(&c2, &ip2, 8080, "pod-2");
    let before = stats(&h.ns, &fs);
    assert_eq!(c1.http_get(&format!("http://{ip2}:8080/")).as_deref(), Some("pod-2"));
    let _s6 = serve_http(&c2, &ip2v6, 8081, "pod-2-v6");
    assert_eq!(c1.http_get(&format!("http://[{ip2v6}]:8081/")).as_deref(), Some("pod-2-v6"));
    let after = stats(&h.ns, &fs);
    assert!(
        after[FROM_POD_TO_POD] >= before[FROM_POD_TO_POD] + 8,
        "pod ↔ pod TCP took the fast path: {before:?} → {after:?}"
    );
    // ICMP and the host's own address: the stack.
    assert!(c1.ping(&ip2), "pod → pod ping (through the stack)");
    assert!(c1.ping(&h.v4(2)), "pod → host");
    assert_eq!(
        h.ns.http_get(&format!("http://{ip2}:8080/")).as_deref(),
        Some("pod-2"),
        "host → pod"
    );

    // A ClusterIP as kube-proxy's nftables mode writes it, backed by pod 2,
    // from pod 1: the reply must pass conntrack to be un-DNATed.
    h.ns.kube_proxy_services(&[("198.18.250.10", 80, &ip2, 8080)]);
    let before = stats(&h.ns, &fs);
    assert_eq!(c1.http_get("http://198.18.250.10/").as_deref(), Some("pod-2"), "ClusterIP");
    let after = stats(&h.ns, &fs);
    assert!(after[STACK_NAT_FLOW] > before[STACK_NAT_FLOW], "the reply took the stack: {after:?}");

    // A NodePort on the host's address, from outside; and the outside
    // straight to a pod over a host-gw route: the uplink's fast path.
    nodeport(&h.ns, &ip2);
    assert_eq!(
        h.gw.http_get(&format!("http://{}:30080/", h.v4(2))).as_deref(),
        Some("pod-2"),
        "NodePort"
    );
    h.gw.ip(&["route", "add", "198.19.32.0/24", "via", &h.v4(2)]);
    let before = stats(&h.ns, &fs);
    assert_eq!(
        h.gw.http_get(&format!("http://{ip2}:8080/")).as_deref(),
        Some("pod-2"),
        "outside → pod"
    );
    let after = stats(&h.ns, &fs);
    assert!(
        after[FROM_UPLINK_TO_POD] >= before[FROM_UPLINK_TO_POD] + 3,
        "uplink → pod took the fast path: {before:?} → {after:?}"
    );

    del(&h.ns, "b1", &c1.path(), &conf, Some(&r1));
    assert!(!fs.pins().is_empty(), "pod 2 still uses the set");
    assert!(!tcx(&h.ns, &fs).iter().any(|(d, _)| d == &veth1));
    assert!(c2.ping(&h.v4(2)));
    del(&h.ns, "b2", &c2.path(), &conf, Some(&r2));
    assert_eq!(fs.pins(), Vec::<String>::new(), "the last DEL removes programs, maps and links");
    assert_eq!(tcx(&h.ns, &fs), vec![], "nothing attached to the uplink");
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

#[test]
fn a_failed_add_leaves_no_program_map_entry_or_pin() {
    let fs = BpfFs::new();
    let h = Host::new(33);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let good = conf(&h, &fs, json!({}));
    if refused_without_tcx(&h, &fs, &good, &c1) {
        return;
    }
    let r1 = add(&h.ns, "k1", &c1, &good);
    let pins = fs.pins();
    let held = h.reservations("rb");

    // An uplink that is not there: refused, and pod 1's set is as it was.
    let bad = conf(&h, &fs, json!({"uplinks": ["nosuch0"]}));
    Call::new(&h.ns, "ADD", "k2", &c2.path(), "eth0").conf(&bad).expect_err(7, "bpf.uplinks");
    // A pin path with no bpffs, in the private mount namespace `ip netns
    // exec` gives the plugin (a mount there would not outlive it).
    let nofs = conf(&h, &fs, json!({"pinPath": "/run/nearhost-test-no-bpffs/nearhost"}));
    Call::new(&h.ns, "ADD", "k3", &c2.path(), "eth0")
        .conf(&nofs)
        .expect_err(104, "mount -t bpf bpf");
    assert_eq!(c2.link_names(), Vec::<String>::new(), "no interface left in the container");
    assert_eq!(h.reservations("rb"), held, "only pod 1 holds addresses");
    assert_eq!(fs.pins(), pins, "pod 1's programs, maps and links untouched");
    assert!(!std::path::Path::new("/run/nearhost-test-no-bpffs").exists(), "nothing created there");
    for bad in [json!("yes"), json!({"podCIDRs": ["198.19.0.0/33"]}), json!({"uplink": ["eth0"]})] {
        let mut c = good.clone();
        c["bpf"] = bad;
        let out = Call::new(&h.ns, "ADD", "k4", &c2.path(), "eth0").conf(&c);
        assert_eq!(out.code(), 7, "{}", out.msg());
        assert!(out.msg().contains("bpf"), "{}", out.msg());
    }
    assert_eq!(h.ns.link_names().len(), 2, "eth0 and pod 1's veth only: {:?}", h.ns.link_names());

    // A namespace deleted without DEL: the next call drops its entries.
    drop(c1);
    del(&h.ns, "k1", "", &good, None);
    assert_eq!(fs.pins(), Vec::<String>::new());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
    drop(r1);
}

#[test]
fn thirty_parallel_adds_share_one_set_and_the_dels_remove_it() {
    const N: usize = 30;
    let fs = BpfFs::new();
    let h = Host::new(34);
    let ctrs: Vec<Netns> = (0..N).map(|_| Netns::new("c")).collect();
    let conf = conf(&h, &fs, json!({}));
    if refused_without_tcx(&h, &fs, &conf, &ctrs[0]) {
        return;
    }
    let results = add_parallel(&h.ns, "p", &ctrs, &conf);
    let out =
        must("bpftool", &["-j", "map", "dump", "pinned", &format!("{}/nh_pods", host_dir(&fs))]);
    let pods: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pods.as_array().unwrap().len(), 2 * N, "an IPv4 and an IPv6 entry per pod");
    let pod_links = tcx(&h.ns, &fs).iter().filter(|(_, p)| p == "nh_from_pod").count();
    assert_eq!(pod_links, N);
    let _s = serve_http(&ctrs[N - 1], &result_ip(&results[N - 1], 0), 8080, "last");
    assert_eq!(
        ctrs[0].http_get(&format!("http://{}:8080/", result_ip(&results[N - 1], 0))).as_deref(),
        Some("last")
    );
    thread::scope(|s| {
        for (i, (c, r)) in ctrs.iter().zip(&results).enumerate() {
            let (hns, conf) = (&h.ns, &conf);
            s.spawn(move || del(hns, &format!("p{i}"), &c.path(), conf, Some(r)));
        }
    });
    assert_eq!(fs.pins(), Vec::<String>::new());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

/// Two hosts on one switch, pods on `routed` with "bpf" joined by host-gw
/// routes: pod ↔ pod across hosts leaves by the FIB's device and arrives
/// through the uplink's program; a ClusterIP on host 1 backed by a pod on
/// host 2 and a NodePort on host 2 both answer a pod on host 1.
#[test]
fn pods_on_two_hosts_take_the_fast_path_and_services_across_hosts_still_answer() {
    let sw = Switch::new();
    let hosts = [Netns::new("h"), Netns::new("h")];
    let fss = [BpfFs::new(), BpfFs::new()];
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    sw.plug(&hosts[0], 11);
    sw.plug(&hosts[1], 12);
    // host-gw: each host routes the other's pod subnet via the other.
    hosts[0].ip(&["route", "add", "198.19.42.0/24", "via", &format!("{NET}.12")]);
    hosts[1].ip(&["route", "add", "198.19.41.0/24", "via", &format!("{NET}.11")]);
    let conf = |i: usize| {
        let ipam = json!({"type": "nearhost", "dataDir": data[i].path(),
            "ranges": [[{"subnet": format!("198.19.{}.0/24", 41 + i)}]]});
        netconf(
            "1.1.0",
            "rb2",
            "routed",
            ipam,
            json!({"bpf": {
            "uplinks": ["eth0"], "podCIDRs": ["198.19.40.0/22"], "pinPath": fss[i].pin_path()}}),
        )
    };
    let (a, c) = (Netns::new("c"), Netns::new("c"));
    let probe = Netns::new("c");
    if refused_without_tcx_on(&hosts[0], &fss[0], &conf(0), &probe) {
        return;
    }
    let ra = add(&hosts[0], "a", &a, &conf(0));
    let rc = add(&hosts[1], "c", &c, &conf(1));
    let (ip_a, ip_c) = (result_ip(&ra, 0), result_ip(&rc, 0));
    let _sc = serve_http(&c, &ip_c, 8080, "pod-c");
    let _sa = serve_http(&a, &ip_a, 8080, "pod-a");

    let (b0, b1) = (stats(&hosts[0], &fss[0]), stats(&hosts[1], &fss[1]));
    assert_eq!(a.http_get(&format!("http://{ip_c}:8080/")).as_deref(), Some("pod-c"));
    assert_eq!(c.http_get(&format!("http://{ip_a}:8080/")).as_deref(), Some("pod-a"));
    let (s0, s1) = (stats(&hosts[0], &fss[0]), stats(&hosts[1], &fss[1]));
    for (before, after, host) in [(&b0, &s0, 1), (&b1, &s1, 2)] {
        assert!(
            after[FROM_POD_TO_REMOTE] >= before[FROM_POD_TO_REMOTE] + 4,
            "host {host}: pod → other host redirected: {before:?} → {after:?}"
        );
        assert!(
            after[FROM_UPLINK_TO_POD] >= before[FROM_UPLINK_TO_POD] + 4,
            "host {host}: other host → pod redirected: {before:?} → {after:?}"
        );
    }

    // A ClusterIP on host 1 backed by pod c on host 2, from pod a.
    hosts[0].kube_proxy_services(&[("198.18.250.10", 80, &ip_c, 8080)]);
    assert_eq!(a.http_get("http://198.18.250.10/").as_deref(), Some("pod-c"), "ClusterIP");
    // A NodePort on host 2's address, DNATed to pod c, from pod a on host 1.
    nodeport(&hosts[1], &ip_c);
    assert_eq!(
        a.http_get(&format!("http://{NET}.12:30080/")).as_deref(),
        Some("pod-c"),
        "NodePort"
    );
    // And pod c on host 2 to host 1's own address (the stack both ways).
    assert!(c.ping(&format!("{NET}.11")));

    del(&hosts[0], "a", &a.path(), &conf(0), Some(&ra));
    del(&hosts[1], "c", &c.path(), &conf(1), Some(&rc));
    for fs in &fss {
        assert_eq!(fs.pins(), Vec::<String>::new());
    }
    for h in &hosts {
        assert_eq!(tcx(h, &fss[0]), vec![], "nothing attached to the uplinks");
    }
}
