//! 10 simulated hosts with agents on one etcd, 1,000 container ADDs in total
//! (100 per host, the hosts in parallel): wall time, etcd requests per ADD
//! (from the agents' own request counters), blocks claimed, agent memory.
//! Then route convergence: `--claims N` more blocks claimed (by ADDs on the
//! hosts in turn), each timed from etcd's notification of the claim (an
//! `etcdctl watch` beside the agents) to the route's arrival in every other
//! host's kernel (`RTM_NEWROUTE` on a netlink socket in each host): p50/p99
//! per host and until the last host has it.
//!
//! Run as root: `cargo bench -p nearhost --bench agent_scale [-- --hosts 10 --adds 1000 --claims 20]`

use nearhost_testkit as support;

use nearhost_testkit::agent as fixture;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fixture::*;
use support::*;

fn rss_kib(pid: i32) -> u64 {
    nearhost_kernel::process::rss_kib(pid as u32).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let hosts = opt("--hosts", 10) as u8;
    let adds = opt("--adds", 1000);
    if which("etcd").is_none() {
        eprintln!("agent_scale: NOT RUN: etcd is missing (apt-get install etcd-server)");
        std::process::exit(2);
    }
    let claims = opt("--claims", 20);
    let (sw, etcd, ep) = etcd_with_pool(1, "p1", "198.19.0.0/16", 26);
    let mut nodes: Vec<Node> = (1..=hosts).map(|i| Node::new(&sw, i, "routed")).collect();
    let started = Instant::now();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.start_agent(&ep, &["--pool", "p1", "--release-grace", "600", "--block-lease-ttl", "600"]);
        if (i + 1) % 10 == 0 {
            eprintln!("  {} agents ready ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
        }
    }
    let per = adds / nodes.len();
    let ctrs: Vec<Vec<Netns>> =
        nodes.iter().map(|_| (0..per).map(|_| Netns::new("c")).collect()).collect();
    let requests = |nodes: &[Node]| {
        nodes.iter().map(|n| n.metric("nearhost_agent_etcd_requests_total")).sum::<f64>()
    };
    let blocks =
        |nodes: &[Node]| nodes.iter().map(|n| n.metric("nearhost_agent_blocks_owned")).sum::<f64>();
    let (req0, blk0) = (requests(&nodes), blocks(&nodes));
    eprintln!(
        "{} hosts ready ({} blocks, {} etcd requests so far); {} ADDs ...",
        nodes.len(),
        blk0,
        req0,
        per * nodes.len()
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for (n, list) in nodes.iter().zip(&ctrs) {
            s.spawn(move || {
                let conf = n.conf("p1");
                for (i, c) in list.iter().enumerate() {
                    add(&n.ns, &format!("{}-{i}", n.name), c, &conf);
                }
            });
        }
    });
    let wall = start.elapsed();
    std::thread::sleep(std::time::Duration::from_secs(3)); // metrics refresh every 2 s
    let (req1, blk1) = (requests(&nodes), blocks(&nodes));
    let total = per * nodes.len();
    let rss: Vec<u64> = nodes.iter().map(|n| rss_kib(n.agent.pid())).collect();
    let (rss_min, rss_max) =
        (rss.iter().min().copied().unwrap_or(0), rss.iter().max().copied().unwrap_or(0));
    println!(
        "agent_scale: {} hosts, {total} ADDs (hosts in parallel, each sequential)",
        nodes.len()
    );
    println!(
        "  wall time            {:.2} s ({:.1} ADDs/s, {:.1} ms per ADD per host)",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / per as f64
    );
    println!(
        "  etcd requests        {} during the ADDs = {:.3} per ADD",
        req1 - req0,
        (req1 - req0) / total as f64
    );
    println!(
        "  blocks claimed       {} during the ADDs = {:.3} per ADD ({} in all)",
        blk1 - blk0,
        (blk1 - blk0) / total as f64,
        blk1
    );
    println!("  agent RSS            {} - {} KiB", rss_min, rss_max);

    convergence(&nodes, &etcd[0], claims);
}

/// Claims `claims` more blocks, by ADDs on the hosts in turn, and times each
/// from etcd's notification to its route in every other host's kernel.
fn convergence(nodes: &[Node], etcd: &EtcdMember, claims: usize) {
    if claims == 0 || nodes.len() < 2 {
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals: Vec<Arrivals> =
        nodes.iter().map(|n| watch_routes(n.ns.name.clone(), Arc::clone(&stop))).collect();
    let (_watcher, claimed) = watch_claims(&etcd.ns, &etcd.client_url());
    std::thread::sleep(Duration::from_millis(500)); // watchers in place
    let mut per_host = Vec::new();
    let mut last_host = Vec::new();
    let mut missing = 0;
    let mut ctrs = Vec::new();
    for k in 0..claims {
        let h = k % nodes.len();
        let n = &nodes[h];
        let before = claimed.lock().unwrap().len();
        // ADDs until the claim shows (a /26 block runs low after ~55).
        let mut i = 0;
        while claimed.lock().unwrap().len() == before && i < 200 {
            let c = Netns::new("c");
            add(&n.ns, &format!("{}-conv{k}-{i}", n.name), &c, &n.conf("p1"));
            ctrs.push(c);
            i += 1;
            if i > 40 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let (block, t0) = claimed.lock().unwrap()[before].clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut times: HashMap<usize, f64> = HashMap::new();
        while Instant::now() < deadline && times.len() < nodes.len() - 1 {
            for (j, a) in arrivals.iter().enumerate().filter(|(j, _)| *j != h) {
                if let Some((_, t)) = a.lock().unwrap().iter().find(|(d, _)| *d == block) {
                    times.insert(j, t.saturating_duration_since(t0).as_secs_f64() * 1e3);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        missing += nodes.len() - 1 - times.len();
        per_host.extend(times.values().copied());
        last_host.push(times.values().copied().fold(0.0, f64::max));
        eprintln!(
            "  claim {}/{claims}: {block} by {}: all hosts in {:.1} ms",
            k + 1,
            n.name,
            last_host[k]
        );
    }
    stop.store(true, Ordering::Relaxed);
    per_host.sort_by(f64::total_cmp);
    last_host.sort_by(f64::total_cmp);
    println!(
        "  route convergence    {claims} claims x {} hosts: per host p50 {:.1} ms, p99 {:.1} ms; until the last host p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {missing} routes never arrived",
        nodes.len() - 1,
        percentile(&per_host, 0.5),
        percentile(&per_host, 0.99),
        percentile(&last_host, 0.5),
        percentile(&last_host, 0.99),
        last_host.last().copied().unwrap_or(f64::NAN),
    );
    if missing > 0 {
        eprintln!("agent_scale: FAILED: {missing} routes never arrived");
        std::process::exit(1);
    }
}

/// Route arrivals in one host, or claims seen in etcd: (block, when).
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

/// Records IPv4 route additions inside namespace `ns` (the kernel's route
/// events, read on a thread of its own) until `stop`.
fn watch_routes(ns: String, stop: Arc<AtomicBool>) -> Arrivals {
    let seen: Arrivals = Arc::default();
    let out = Arc::clone(&seen);
    let netns = nearhost_kernel::NetNs::open(nearhost_kernel::netns::named_path(&ns)).unwrap();
    let mut events =
        nearhost_kernel::route_events::RouteEvents::subscribe(&netns, Duration::from_millis(200))
            .unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let added = events.added().unwrap();
            let now = Instant::now();
            out.lock().unwrap().extend(added.into_iter().map(|dst| (dst.to_string(), now)));
        }
    });
    seen
}

/// Claims of blocks as an etcd watcher sees them: (block, when).
fn watch_claims(etcd_ns: &Netns, url: &str) -> (KillOnDrop, Arrivals) {
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &etcd_ns.name, "etcdctl", "--endpoints", url])
        .args(["watch", "--prefix", "/nearhost/blocks/"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let seen: Arrivals = Arc::default();
    let out = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut put = false;
        for line in lines.map_while(Result::ok) {
            let now = Instant::now();
            if line == "PUT" {
                put = true;
            } else if put && line.starts_with("/nearhost/blocks/") {
                put = false;
                let block = line.rsplit('/').next().unwrap().replace('_', "/");
                out.lock().unwrap().push((block, now));
            }
        }
    });
    (KillOnDrop(child), seen)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn which(cmd: &str) -> Option<String> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| std::path::Path::new(p).exists())
}
