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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// Listens for IPv4 route additions inside namespace `ns` (a thread of its
/// own, entered with setns) until `stop`.
fn watch_routes(ns: String, stop: Arc<AtomicBool>) -> Arrivals {
    let seen: Arrivals = Arc::default();
    let out = Arc::clone(&seen);
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        // SAFETY: plain socket(2)/bind(2)/setsockopt(2)/recv(2) on a descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
        assert!(fd >= 0, "netlink socket");
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        let rc =
            unsafe { libc::bind(fd.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, len) };
        assert_eq!(rc, 0, "bind to RTMGRP_IPV4_ROUTE");
        let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let now = Instant::now();
            if n <= 0 {
                continue;
            }
            for dst in new_routes(&buf[..n as usize]) {
                out.lock().unwrap().push((dst, now));
            }
        }
    });
    seen
}

/// The destinations (`A.B.C.D/LEN`) of the RTM_NEWROUTE messages in `buf`.
fn new_routes(buf: &[u8]) -> Vec<String> {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]) as usize;
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        if u16_at(msg, 4) == libc::RTM_NEWROUTE as usize && msg.len() >= 28 {
            let dst_len = msg[17];
            let mut a = 28;
            while a + 4 <= msg.len() {
                let (alen, atype) = (u16_at(msg, a), u16_at(msg, a + 2));
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                if atype == libc::RTA_DST as usize && alen == 8 {
                    let d = &msg[a + 4..a + 8];
                    out.push(format!("{}.{}.{}.{}/{dst_len}", d[0], d[1], d[2], d[3]));
                }
                a += (alen + 3) & !3;
            }
        }
        off += (len + 3) & !3;
    }
    out
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
