//! What `hostReach` costs, measured with `nearhost bench rr` (1-byte TCP
//! request/response on one connection), the cases interleaved A B S R A B S R
//! … in one lab of namespaces (one host and a server on a LAN switch):
//!
//! - A: pod → pod on macvlan, without hostReach;
//! - B: the same with hostReach on both pods (the goal: B/A ≤ 1.05 at p50,
//!   the direct path is untouched);
//! - S: a macvlan pod with hostReach → a ClusterIP (kube-proxy-style DNAT in
//!   the host) → the server;
//! - R: a bridge-datapath pod → the same ClusterIP → the server (the goal:
//!   S/R ≤ 1.0 at p50: the Service path is no worse than a veth pod's).
//!
//! Each ratio is taken per round from its back-to-back pair; the medians are
//! printed with whether each goal is met. Like the other benchmarks it fails
//! only when a case cannot run: on this shared machine a ratio is a
//! measurement to record (docs/PERFORMANCE.md), not a pass/fail test.
//!
//! Run: `cargo bench -p nearhost --bench host_reach` (NHB_ROUNDS, NHB_SECONDS:
//! 7 rounds × 3 s per case).

use std::time::Duration;

use nearhost_testkit::agent::{Switch, NET};
use nearhost_testkit::tools::{env_or, median};
use nearhost_testkit::*;
use serde_json::{json, Value};

const SERVICE: &str = "198.18.250.12";

fn rr(from: &Netns, target: &str, secs: u64) -> Option<f64> {
    let out = from.exec(&[
        bin(),
        "bench",
        "rr",
        "--target",
        target,
        "--duration",
        &secs.to_string(),
        "--json",
    ]);
    if !out.status.success() {
        eprintln!("bench rr {target}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("bench rr --json");
    v["latency"]["p50_us"].as_f64()
}

fn serve(ns: &Netns, ip: &str) -> KillOnDrop {
    KillOnDrop(ns.spawn(&[
        bin(),
        "bench",
        "serve",
        "--listen",
        &format!("{ip}:7000"),
        "--threads",
        "1",
    ]))
}

fn main() {
    let rounds: usize = env_or("NHB_ROUNDS", 7);
    let secs: u64 = env_or("NHB_SECONDS", 3);
    let sw = Switch::new();
    let host = Netns::new("h");
    sw.plug(&host, 11);
    let server = Netns::new("s");
    sw.plug(&server, 50);
    // A Kubernetes node forwards (kube-proxy requires it).
    host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let data = tempfile::tempdir().unwrap();
    let macvlan = |name: &str, start: u8, reach: Option<Value>| {
        let ipam = json!({"type": "nearhost", "dataDir": data.path(),
            "ranges": [[{"subnet": format!("{NET}.0/24"), "rangeStart": format!("{NET}.{start}"),
                         "rangeEnd": format!("{NET}.{}", start + 9)}]]});
        let mut extra = json!({"master": "eth0"});
        if let Some(r) = reach {
            extra["hostReach"] = r;
        }
        netconf("1.1.0", name, "macvlan", ipam, extra)
    };
    let plain = macvlan("plain", 100, None);
    let reach = macvlan("reach", 120, Some(json!({"serviceCIDRs": ["198.18.250.0/24"]})));
    let bridge = netconf(
        "1.1.0",
        "veth",
        "bridge",
        json!({"type": "nearhost", "dataDir": data.path(), "ranges": [[{"subnet": "198.18.201.0/24"}]],
               "routes": [{"dst": "0.0.0.0/0"}]}),
        json!({"bridge": "nhbr0", "isGateway": true, "ipMasq": true}),
    );
    let pods: Vec<Netns> = (0..5).map(|_| Netns::new("c")).collect();
    let results: Vec<Value> = [(&plain, 0), (&plain, 1), (&reach, 2), (&reach, 3), (&bridge, 4)]
        .iter()
        .map(|(conf, i)| add(&host, &format!("p{i}"), &pods[*i], conf))
        .collect();
    let ip = |i: usize| result_ip(&results[i], 0);
    let server_ip = format!("{NET}.50");
    host.kube_proxy_services(&[(SERVICE, 7000, &server_ip, 7000)]);
    let _servers = [serve(&pods[1], &ip(1)), serve(&pods[3], &ip(3)), serve(&server, &server_ip)];
    std::thread::sleep(Duration::from_secs(1));
    let service = format!("{SERVICE}:7000");
    let cases: [(&str, &Netns, String); 4] = [
        ("A macvlan pod → pod", &pods[0], format!("{}:7000", ip(1))),
        ("B macvlan+hostReach pod → pod", &pods[2], format!("{}:7000", ip(3))),
        ("S macvlan+hostReach pod → ClusterIP", &pods[2], service.clone()),
        ("R bridge pod → ClusterIP", &pods[4], service),
    ];
    let mut p50 = vec![Vec::new(); cases.len()];
    let (mut direct, mut services) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let mut this = Vec::new();
        for (i, (name, from, target)) in cases.iter().enumerate() {
            let v = rr(from, target, secs).unwrap_or_else(|| panic!("{name} could not run"));
            p50[i].push(v);
            this.push(v);
        }
        direct.push(this[1] / this[0]);
        services.push(this[2] / this[3]);
        println!(
            "round {round}/{rounds}: p50 A {:.1} µs, B {:.1} µs (B/A {:.3}), S {:.1} µs, R {:.1} µs (S/R {:.3})",
            this[0], this[1], direct[round - 1], this[2], this[3], services[round - 1]
        );
    }
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!("{name}: median p50 {:.1} µs", median(&p50[i]));
    }
    let (d, s) = (median(&direct), median(&services));
    println!("hostReach on the direct path: p50 ratio B/A {d:.3} (goal ≤ 1.05)");
    println!("Service path: hostReach/bridge p50 ratio S/R {s:.3} (goal ≤ 1.0)");
    for (res, pod, conf) in
        [(0, 0, &plain), (1, 1, &plain), (2, 2, &reach), (3, 3, &reach), (4, 4, &bridge)]
    {
        del(&host, &format!("p{pod}"), &pods[pod].path(), conf, Some(&results[res]));
    }
    let verdict = |met: bool| if met { "goal met" } else { "GOAL NOT MET" };
    println!("direct path: {}; Service path: {}", verdict(d <= 1.05), verdict(s <= 1.0));
}
