//! Efficiency of `nearhost bench rate --http` against `wrk`: both drive the
//! same nginx (started here with its own configuration in a temporary
//! directory, on loopback, serving a 350-byte file, one worker per CPU as
//! `worker_processes auto` would, not pinned) with the same connections and
//! threads, the client pinned to CPU 0, interleaved over several rounds.
//!
//! The server is deliberately given every CPU: with nginx pinned to a core of
//! its own, that core saturates first and both clients then report the same
//! server-bound rate whatever they cost. Sharing the machine, a client that
//! spends less CPU per request leaves more to nginx, and the rate shows it.
//!
//! `rate` runs with a target far above what the path sustains and one
//! request in flight per connection (`--pipeline 1`, as wrk), so it is as
//! closed as wrk and the comparison is of client efficiency, not of
//! pipelining. Client CPU is user + system time of the client process
//! (getrusage of the reaped child).
//!
//! Checks (median over rounds of the ratio of each round's back-to-back
//! pair): request rate nearhost/wrk ≥ 1.0, and client CPU seconds
//! nearhost/wrk ≤ 1.05 (the same or lower, with 5% for measurement noise).
//!
//! Run: `cargo bench -p nearhost --bench bench_efficiency` (set NHB_ROUNDS,
//! NHB_SECONDS, NHB_CONNECTIONS to change 7 rounds × 5 s × 50 connections).

use nearhost_testkit::bench as bench_support;
use nearhost_testkit::tools;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bench_support::{run_program, run_report, spawn_program, ChildGuard};
use nearhost_kernel::process::{self, Process};
use tools::{
    children_cpu_seconds, env_or, loadavg, median, require_tool, wrk_requests_per_sec, Check,
};

/// One client run: request rate, client CPU seconds, and the nginx
/// workers' CPU seconds meanwhile.
struct Sample {
    per_s: f64,
    cpu_s: f64,
    server_cpu_s: f64,
}

/// utime + stime of a process, in seconds. A worker that just exited used no
/// further CPU.
fn process_cpu_seconds(pid: u32) -> f64 {
    process::cpu_seconds(pid).unwrap_or(0.0)
}

/// Runs one client measurement, adding the server's CPU use meanwhile.
fn measured(nginx: &Nginx, client: impl FnOnce() -> Sample) -> Sample {
    let before = nginx.cpu_seconds();
    let mut s = client();
    s.server_cpu_s = nginx.cpu_seconds() - before;
    s
}

/// nginx's master process and its workers. Workers outlive a killed master,
/// so dropping this stops the master gracefully and then kills any worker
/// still there.
struct Nginx {
    master: ChildGuard,
}

impl Nginx {
    fn workers(&self) -> Vec<u32> {
        process::children(self.master.child.id())
    }

    /// CPU seconds used so far by all workers.
    fn cpu_seconds(&self) -> f64 {
        self.workers().into_iter().map(process_cpu_seconds).sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers: Vec<Process> = self.workers().into_iter().filter_map(Process::of).collect();
        if let Some(master) = Process::of(self.master.child.id()) {
            // Reaped by the guard's own drop after this; a zombie counts as gone.
            master.terminate(Duration::from_secs(3));
        }
        for w in workers {
            w.terminate(Duration::ZERO);
        }
    }
}

/// Starts nginx on a free loopback port; returns it with the port.
fn start_nginx(dir: &Path) -> (Nginx, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let listen = format!("127.0.0.1:{port}");
    let config = nearhost_lab::nginx::Config { dir, listen: &listen, workers, cpu: None };
    let conf = config.write(&[("file350", 350)]).expect("writing nginx.conf and the 350-byte file");
    let (conf, prefix) = (conf.display().to_string(), dir.display().to_string());
    let nginx = Nginx { master: spawn_program(None, "nginx", &["-c", &conf, "-p", &prefix]) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on 127.0.0.1:{port} within 5 s (see {prefix}/error.log)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (nginx, port)
}

fn wrk(url: &str, secs: u64, connections: u32) -> Sample {
    let before = children_cpu_seconds();
    let (d, c) = (format!("{secs}s"), connections.to_string());
    let out = run_program(
        None,
        "taskset",
        &["-c", "0", "wrk", "-t1", "-c", &c, "-d", &d, url],
        Duration::from_secs(secs + 30),
    );
    let cpu_s = children_cpu_seconds() - before;
    assert!(out.status.success(), "wrk failed: {}", out.stderr);
    let per_s = wrk_requests_per_sec(&out.stdout)
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{}", out.stdout));
    assert!(!out.stdout.contains("Non-2xx"), "wrk saw errors:\n{}", out.stdout);
    Sample { per_s, cpu_s, server_cpu_s: 0.0 }
}

fn ours(target: &str, secs: u64, connections: u32) -> Sample {
    let before = children_cpu_seconds();
    let (s, c) = (secs.to_string(), connections.to_string());
    let args = [
        "bench", "rate", "--http", "--target", target, "--path", "/file350", "--connections", &c,
        "--threads", "1", "--rate", "10000000", "--pipeline", "1", "--duration", &s, "--cpus", "0",
        "--timeout", "2",
    ];
    let r = run_report(None, &args, Duration::from_secs(secs + 30));
    let cpu_s = children_cpu_seconds() - before;
    assert_eq!(r.counts.errors, 0, "nearhost saw errors: {:?}", r.counts);
    Sample { per_s: r.rate.expect("rate section").achieved_per_s, cpu_s, server_cpu_s: 0.0 }
}

fn main() {
    require_tool("wrk", "--version", "wrk");
    require_tool("nginx", "-v", "nginx-light");
    let rounds: usize = env_or("NHB_ROUNDS", 7);
    let secs: u64 = env_or("NHB_SECONDS", 5);
    let connections: u32 = env_or("NHB_CONNECTIONS", 50);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (nginx, port) = start_nginx(dir.path());
    let target = format!("127.0.0.1:{port}");
    let url = format!("http://{target}/file350");
    // Sanity: nginx serves the file and our client reads it as 350-byte bodies.
    let probe = run_report(
        None,
        &[
            "bench", "rate", "--http", "--target", &target, "--path", "/file350", "--duration",
            "1", "--rate", "100",
        ],
        Duration::from_secs(30),
    );
    assert!(
        probe.counts.errors == 0 && probe.counts.responses >= 99,
        "probe against nginx: {:?}",
        probe.counts
    );
    println!(
        "bench_efficiency: nginx {} workers (not pinned), clients pinned to CPU 0, {connections} connections, 1 thread, {rounds} rounds x {secs} s",
        nginx.workers().len()
    );
    let (mut w, mut n) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        println!("round {} (loadavg {})", round + 1, loadavg());
        let run_wrk = || measured(&nginx, || wrk(&url, secs, connections));
        let run_ours = || measured(&nginx, || ours(&target, secs, connections));
        let (a, b) = if round % 2 == 0 {
            let a = run_wrk();
            (a, run_ours())
        } else {
            let b = run_ours();
            (run_wrk(), b)
        };
        for (name, s) in [("wrk", &a), ("nearhost", &b)] {
            println!(
                "    {name:<9} {:>10.0} req/s  client cpu {:>6.3} s ({:>5.2} µs/req)  nginx cpu {:>6.3} s",
                s.per_s,
                s.cpu_s,
                per_req_us(s, secs),
                s.server_cpu_s
            );
        }
        w.push(a);
        n.push(b);
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let (w_rate, n_rate) = (med(&w, |s| s.per_s), med(&n, |s| s.per_s));
    let (w_cpu, n_cpu) = (med(&w, |s| s.cpu_s), med(&n, |s| s.cpu_s));
    let fmt = |rate: f64, cpu: f64| format!("{rate:.0} req/s, cpu {cpu:.2} s");
    println!("summary (medians of {rounds} rounds, loadavg now {}):", loadavg());
    // Each round's two runs were back to back: the median of the per-round
    // ratios is the least disturbed by whatever else the machine was doing.
    let paired = |f: fn(&Sample) -> f64| {
        median(&n.iter().zip(&w).map(|(a, b)| f(a) / f(b)).collect::<Vec<_>>())
    };
    let rate_ratio = paired(|s| s.per_s);
    let cpu_ratio = paired(|s| s.cpu_s);
    let rate = Check::ratio(
        "efficiency-rate",
        format!("{n_rate:.0} req/s"),
        format!("wrk {w_rate:.0} req/s"),
        rate_ratio,
        1.0,
        f64::INFINITY,
    );
    let cpu = Check::ratio(
        "efficiency-client-cpu",
        fmt(n_rate, n_cpu),
        format!("wrk {}", fmt(w_rate, w_cpu)),
        cpu_ratio,
        0.0,
        1.05,
    );
    println!("{}\n{}", rate.line(), cpu.line());
    println!(
        "      client cpu per request: nearhost {:.2} µs, wrk {:.2} µs; nginx cpu {:.0}% (nearhost runs), {:.0}% (wrk runs) of one CPU",
        n_cpu * 1e6 / (n_rate * secs as f64),
        w_cpu * 1e6 / (w_rate * secs as f64),
        med(&n, |s| s.server_cpu_s) * 100.0 / secs as f64,
        med(&w, |s| s.server_cpu_s) * 100.0 / secs as f64,
    );
}

fn per_req_us(s: &Sample, secs: u64) -> f64 {
    s.cpu_s * 1e6 / (s.per_s * secs as f64)
}
