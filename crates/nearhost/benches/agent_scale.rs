//! 10 simulated hosts with agents on one etcd, 1,000 container ADDs in total
//! (100 per host, the hosts in parallel): wall time, etcd requests per ADD
//! (from the agents' own request counters), blocks claimed, agent memory.
//!
//! Run as root: `cargo bench -p nearhost --bench agent_scale [-- --hosts 10 --adds 1000]`

use nearhost_testkit as support;

use nearhost_testkit::agent as fixture;

use std::time::Instant;

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
    let (sw, _etcd, ep) = etcd_with_pool(1, "p1", "198.19.0.0/16", 26);
    let mut nodes: Vec<Node> = (1..=hosts).map(|i| Node::new(&sw, i, "routed")).collect();
    for n in &mut nodes {
        n.start_agent(&ep, &["--pool", "p1", "--release-grace", "600"]);
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
}

fn which(cmd: &str) -> Option<String> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| std::path::Path::new(p).exists())
}
