//! ADD and DEL wall time per container, nearhost against the reference plugins
//! (`/usr/lib/cni/macvlan`, `/usr/lib/cni/bridge`, both with `host-local`), in one
//! run, interleaved (A B B A per round so drift and order hit both alike), plus
//! the kernel's own floor (the same link created and deleted in-process, no
//! plugin at all) and a burst of 100 concurrent ADDs.
//!
//! Run as root: `cargo bench -p nearhost --bench cni_add_del [-- --rounds 5 --per-round 20 --json out.json]`

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nearhost_kernel::link::{MacvlanMode, NewLink, NewLinkKind};
use nearhost_kernel::process;
use nearhost_kernel::{NetNs, Netlink};
use nearhost_testkit::Netns;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_nearhost");

/// One plugin implementation of one datapath.
struct Plugin {
    label: &'static str,
    binary: &'static str,
    conf: Value,
}

/// Runs one CNI call with the plugin inside `host` (setns before exec: no
/// launcher process in the measurement). Returns its wall time.
fn call(host: &NetNs, p: &Plugin, cmd: &str, id: &str, ctr: &str) -> Duration {
    let stdin = p.conf.to_string();
    let start = Instant::now();
    let mut c = Command::new(p.binary);
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", ctr)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = process::spawn_in(host, &mut c, false).expect("spawn plugin");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {cmd} failed: {}",
        p.label,
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

#[derive(Default)]
struct Samples {
    add: Vec<f64>,
    del: Vec<f64>,
}

fn plugins(data: &str) -> Vec<(&'static str, Plugin, Plugin)> {
    let hl = |subnet: &str| json!({"type": "host-local", "dataDir": format!("{data}/hl"), "ranges": [[{"subnet": subnet}]]});
    let nh = |subnet: &str| json!({"type": "nearhost", "dataDir": format!("{data}/nh"), "ranges": [[{"subnet": subnet}]]});
    vec![
        (
            "macvlan",
            Plugin {
                label: "nearhost",
                binary: BIN,
                conf: json!({"cniVersion": "1.0.0", "name": "nhmv", "type": "nearhost", "datapath": "macvlan", "master": "eth0", "ipam": nh("198.18.0.0/24")}),
            },
            Plugin {
                label: "reference",
                binary: "/usr/lib/cni/macvlan",
                conf: json!({"cniVersion": "1.0.0", "name": "refmv", "type": "macvlan", "master": "eth0", "ipam": hl("198.18.0.0/24")}),
            },
        ),
        (
            "bridge",
            Plugin {
                label: "nearhost",
                binary: BIN,
                conf: json!({"cniVersion": "1.0.0", "name": "nhbr", "type": "nearhost", "datapath": "bridge", "bridge": "nhbr0", "isGateway": true, "ipam": nh("198.19.1.0/24")}),
            },
            Plugin {
                label: "reference",
                binary: "/usr/lib/cni/bridge",
                conf: json!({"cniVersion": "1.0.0", "name": "refbr", "type": "bridge", "bridge": "refbr0", "isGateway": true, "ipam": hl("198.19.2.0/24")}),
            },
        ),
    ]
}

/// The kernel's floor for one datapath: the link created in the container and
/// deleted again, in-process (what every plugin must at least pay).
fn floor(
    dp: &str, host_nl: &mut Netlink, ctr: &NetNs, ctr_nl: &mut Netlink, parent: u32,
) -> (f64, f64) {
    use std::os::fd::AsFd;
    let kind = match dp {
        "macvlan" => NewLinkKind::Macvlan { parent, mode: MacvlanMode::Bridge },
        _ => NewLinkKind::Veth {
            peer_name: "flpeer".into(),
            peer_netns: Some(ctr.as_fd()),
            peer_mac: None,
        },
    };
    let netns_fd = if dp == "macvlan" { Some(ctr.as_fd()) } else { None };
    let spec = NewLink { name: "floor0".into(), kind, netns: netns_fd, mtu: None, mac: None };
    let t = Instant::now();
    host_nl.create_link(&spec).expect("floor create");
    let add = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let nl = if dp == "macvlan" { ctr_nl } else { host_nl };
    let l = nl.require_link("floor0").expect("floor link");
    nl.delete_link(l.index).expect("floor delete");
    (add, t.elapsed().as_secs_f64() * 1e3)
}

fn burst(host: &NetNs, p: &Plugin, ctrs: &[Netns], cmd: &str) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            s.spawn(move || call(host, p, cmd, &format!("burst{i}"), &c.path()));
        }
    });
    t.elapsed().as_secs_f64() * 1e3
}

/// The lab: a host namespace whose NIC is a veth end, a container
/// namespace, and netlink sockets in both for the kernel-floor measurement.
struct Bench {
    /// Kept for its drop: the namespace goes with the bench.
    _host: Netns,
    host_ns: NetNs,
    ctr: Netns,
    ctr_ns: NetNs,
    host_nl: Netlink,
    ctr_nl: Netlink,
    parent: u32,
}

impl Bench {
    fn new() -> Bench {
        let host = Netns::new("h");
        host.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "gw0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"]);
        let ctr = Netns::new("c");
        let host_ns = NetNs::open(host.path()).unwrap();
        let ctr_ns = NetNs::open(ctr.path()).unwrap();
        let mut host_nl = Netlink::open_in(&host_ns).unwrap();
        let ctr_nl = Netlink::open_in(&ctr_ns).unwrap();
        let parent = host_nl.require_link("eth0").unwrap().index;
        Bench { _host: host, host_ns, ctr, ctr_ns, host_nl, ctr_nl, parent }
    }

    /// ADD+DEL pairs of both plugins of one datapath, interleaved (A B, then
    /// B A in the next round), with the kernel's own floor measured beside them.
    fn sequential(
        &mut self, dp: &str, nh: &Plugin, rf: &Plugin, rounds: usize, per_round: usize,
    ) -> (Samples, Samples, Samples) {
        // warm-up: page cache, bridge creation, host-local's directory
        for p in [nh, rf] {
            call(&self.host_ns, p, "ADD", "warm", &self.ctr.path());
            call(&self.host_ns, p, "DEL", "warm", &self.ctr.path());
        }
        let (mut s_nh, mut s_rf, mut s_fl) =
            (Samples::default(), Samples::default(), Samples::default());
        for round in 0..rounds {
            let order: [(&Plugin, bool); 2] =
                if round % 2 == 0 { [(nh, true), (rf, false)] } else { [(rf, false), (nh, true)] };
            for i in 0..per_round {
                for (p, is_nh) in order {
                    let id = format!("r{round}i{i}");
                    let a =
                        call(&self.host_ns, p, "ADD", &id, &self.ctr.path()).as_secs_f64() * 1e3;
                    let d =
                        call(&self.host_ns, p, "DEL", &id, &self.ctr.path()).as_secs_f64() * 1e3;
                    let s = if is_nh { &mut s_nh } else { &mut s_rf };
                    s.add.push(a);
                    s.del.push(d);
                }
                let (fa, fd) =
                    floor(dp, &mut self.host_nl, &self.ctr_ns, &mut self.ctr_nl, self.parent);
                s_fl.add.push(fa);
                s_fl.del.push(fd);
            }
            eprint!("\r{dp}: round {}/{rounds}", round + 1);
        }
        eprintln!();
        (s_nh, s_rf, s_fl)
    }

    /// 100 concurrent ADDs, then DELs, nearhost and reference interleaved.
    fn bursts(&self, nh: &Plugin, rf: &Plugin) -> Vec<(String, f64, f64)> {
        let ctrs: Vec<Netns> = (0..100).map(|i| Netns::new(&format!("b{i}"))).collect();
        let mut bursts = Vec::new();
        for round in 0..3 {
            for p in if round % 2 == 0 { [nh, rf] } else { [rf, nh] } {
                let add = burst(&self.host_ns, p, &ctrs, "ADD");
                let del = burst(&self.host_ns, p, &ctrs, "DEL");
                bursts.push((p.label.to_string(), add, del));
            }
        }
        bursts
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = opt("--rounds", 5);
    let per_round = opt("--per-round", 20);
    let json_out = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    if !std::path::Path::new("/usr/lib/cni/macvlan").exists() {
        eprintln!("cni_add_del: NOT RUN: the reference plugins are missing (apt-get install containernetworking-plugins)");
        std::process::exit(2);
    }
    let data = tempfile::tempdir().unwrap();
    let sets = plugins(&data.path().display().to_string());
    let mut bench = Bench::new();
    let mut results = Vec::new();
    for (dp, nh, rf) in &sets {
        let (s_nh, s_rf, s_fl) = bench.sequential(dp, nh, rf, rounds, per_round);
        results.push((dp.to_string(), s_nh, s_rf, s_fl));
    }
    let bursts = bench.bursts(&sets[0].1, &sets[0].2);

    println!("\nADD and DEL wall time per container (ms), {rounds} rounds x {per_round}, interleaved; median (p90)");
    let report = print_sequential(&mut results);
    println!("\n100 concurrent ADDs then 100 concurrent DELs (macvlan), wall time (ms):");
    for (label, add, del) in &bursts {
        println!("  {label:<10} ADD burst {add:>8.1}   DEL burst {del:>8.1}");
    }
    if let Some(path) = json_out {
        let v = json!({"rounds": rounds, "per_round": per_round, "datapaths": report,
            "bursts": bursts.iter().map(|(l, a, d)| json!({"plugin": l, "add_ms": a, "del_ms": d})).collect::<Vec<_>>()});
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
}

/// The per-datapath table (median and p90 of each plugin and the kernel
/// floor, with ratios); returns its rows as JSON.
fn print_sequential(results: &mut [(String, Samples, Samples, Samples)]) -> Vec<Value> {
    println!("{:<9} {:<10} {:>16} {:>16} {:>16}", "datapath", "plugin", "ADD", "DEL", "ADD+DEL");
    let mut report = Vec::new();
    for (dp, nh, rf, fl) in results {
        let row = |label: &str, s: &mut Samples| {
            let mut both: Vec<f64> = s.add.iter().zip(&s.del).map(|(a, d)| a + d).collect();
            let (a, d, b) = (median(&mut s.add), median(&mut s.del), median(&mut both));
            println!(
                "{dp:<9} {label:<10} {:>8.2} ({:>5.2}) {:>8.2} ({:>5.2}) {:>8.2} ({:>5.2})",
                a,
                p90(&mut s.add),
                d,
                p90(&mut s.del),
                b,
                p90(&mut both)
            );
            (a, d, b)
        };
        let n = row("nearhost", nh);
        let r = row("reference", rf);
        let f = row("kernel", fl);
        println!(
            "{dp:<9} ratio nearhost/reference: ADD {:.2}  DEL {:.2}  ADD+DEL {:.2}   above the kernel floor: ADD {}  DEL {}  ADD+DEL {}",
            n.0 / r.0, n.1 / r.1, n.2 / r.2,
            above_floor(n.0, r.0, f.0), above_floor(n.1, r.1, f.1), above_floor(n.2, r.2, f.2)
        );
        report.push(json!({"datapath": dp, "nearhost_ms": {"add": n.0, "del": n.1, "add_del": n.2},
            "reference_ms": {"add": r.0, "del": r.1, "add_del": r.2}, "kernel_floor_ms": {"add": f.0, "del": f.1, "add_del": f.2},
            "ratio": {"add": n.0 / r.0, "del": n.1 / r.1, "add_del": n.2 / r.2}}));
    }
    report
}

/// Ratio of what nearhost and the reference spend above the kernel floor. When
/// the reference is within half a millisecond of the floor (DEL: both pay only
/// the kernel's device unregistration) there is nothing to compare, and the
/// ratio would be noise over noise (or a division by zero): say so instead.
fn above_floor(ours: f64, reference: f64, floor: f64) -> String {
    let (o, r) = ((ours - floor).max(0.0), reference - floor);
    if r < 0.5 {
        format!("n/a (reference {:+.2} ms from the floor, nearhost {:+.2})", r, ours - floor)
    } else {
        format!("{:.2}", o / r)
    }
}
