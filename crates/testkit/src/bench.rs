//! Helpers for the `nearhost bench` integration tests and benchmarks:
//! run the compiled binary with bounded waits, kill every server at the end,
//! and join two of the kit's namespaces with a veth pair.
//!
//! Everything here cleans up in `Drop`, so a failing assertion never leaves
//! a server running or a namespace behind.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nearhost_bench::Report;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use crate::Netns;

/// The binary under test.
pub fn nearhost() -> &'static str {
    crate::bin()
}

/// A child process that is continued (if stopped), killed and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    pub what: String,
}

impl ChildGuard {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("sending {signal} to {}: {e}", self.what));
    }

    /// Waits for exit within `limit`; panics (and kills) if it takes longer.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not finish within {limit:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A SIGSTOPped process must be continued to act on SIGKILL promptly
            // in every kernel; harmless otherwise.
            let _ = kill(self.pid(), Signal::SIGCONT);
            let _ = kill(self.pid(), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// `nearhost` run directly, or inside a namespace with `ip netns exec`.
pub fn command(netns: Option<&str>, args: &[&str]) -> Command {
    match netns {
        None => {
            let mut c = Command::new(nearhost());
            c.args(args);
            c
        }
        Some(ns) => {
            // `ip netns exec` execs in place, so the child's PID is nearhost's.
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, nearhost()]).args(args);
            c
        }
    }
}

/// Starts `nearhost bench serve --listen LISTEN --json EXTRA…` and returns it
/// with the address it reports.
pub fn start_server(netns: Option<&str>, listen: &str, extra: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut args = vec!["bench", "serve", "--listen", listen, "--json"];
    args.extend_from_slice(extra);
    let child = command(netns, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning nearhost bench serve");
    let mut guard = ChildGuard { child, what: format!("nearhost bench serve {listen}") };
    let stdout = guard.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line =
        rx.recv_timeout(Duration::from_secs(10)).expect("serve printed its address within 10 s");
    let value: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve line {line:?}: {e}"));
    let addr = value["listening"].as_str().expect("listening field").parse().expect("an address");
    (guard, addr)
}

/// Output of a finished client run.
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `nearhost ARGS…` to completion within `limit`, capturing output.
pub fn run(netns: Option<&str>, args: &[&str], limit: Duration) -> RunOutput {
    finish(command(netns, args), &format!("nearhost {}", args.join(" ")), limit)
}

/// Runs any program (a reference tool), optionally inside a namespace, to
/// completion within `limit`.
pub fn run_program(
    netns: Option<&str>, program: &str, args: &[&str], limit: Duration,
) -> RunOutput {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args);
    finish(cmd, &format!("{program} {}", args.join(" ")), limit)
}

/// Starts a long-running program (a reference server) that is killed on drop.
pub fn spawn_program(netns: Option<&str>, program: &str, args: &[&str]) -> ChildGuard {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    let child = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    ChildGuard { child, what: format!("{program} {}", args.join(" ")) }
}

fn finish(mut cmd: Command, what: &str, limit: Duration) -> RunOutput {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let mut guard = ChildGuard { child, what: what.to_string() };
    let readers: Vec<_> = [
        Box::new(guard.child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(guard.child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
    .collect();
    let status = guard.wait(limit);
    let mut texts = readers.into_iter().map(|r| r.join().unwrap_or_default());
    RunOutput {
        status,
        stdout: texts.next().unwrap(),
        stderr: texts.next().unwrap(),
        elapsed: started.elapsed(),
    }
}

/// Runs a client with `--json`, insists on success and parses the report.
pub fn run_report(netns: Option<&str>, args: &[&str], limit: Duration) -> Report {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(netns, &all, limit);
    assert!(
        out.status.success(),
        "nearhost {} failed: {:?}\n{}",
        args.join(" "),
        out.status,
        out.stderr
    );
    Report::from_json(&out.stdout)
        .unwrap_or_else(|e| panic!("report of {args:?} does not parse: {e}\n{}", out.stdout))
}

/// Runs a command that must succeed (set-up steps such as `ip`).
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair: `a` has 198.18.0.1/24, `b` has
/// 198.18.0.2/24 (the benchmarking range; nothing leaves the pair, and
/// other addresses of the /24, such as [`VethPair::SILENT`], answer nothing).
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
}

impl Default for VethPair {
    fn default() -> Self {
        VethPair::new()
    }
}

impl VethPair {
    pub const ADDR_A: &'static str = "198.18.0.1";
    pub const ADDR_B: &'static str = "198.18.0.2";
    /// On the link's subnet but owned by nobody: ARP goes unanswered.
    pub const SILENT: &'static str = "198.18.0.99";

    pub fn new() -> VethPair {
        let pair = VethPair { a: Netns::new("a"), b: Netns::new("b") };
        // Created inside `a` with its peer directly in `b`: no interface is
        // ever in the root namespace, so the names cannot collide with the host's.
        sh(
            "ip",
            &[
                "-n", &pair.a.name, "link", "add", "veth0", "type", "veth", "peer", "name",
                "veth0", "netns", &pair.b.name,
            ],
        );
        for (ns, addr) in [(&pair.a, Self::ADDR_A), (&pair.b, Self::ADDR_B)] {
            sh("ip", &["-n", &ns.name, "addr", "add", &format!("{addr}/24"), "dev", "veth0"]);
            sh("ip", &["-n", &ns.name, "link", "set", "veth0", "up"]);
        }
        pair
    }
}

/// Checks a report's common invariants; returns it for chaining.
pub fn check_report(r: &Report) -> &Report {
    assert_eq!(r.schema, nearhost_bench::report::SCHEMA);
    let expected = r.settings.duration_s.ceil() as usize;
    assert_eq!(r.timeline.len(), expected, "one timeline entry per second");
    if let Some(l) = &r.latency {
        let p = [l.min_us, l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.p99_999_us];
        assert!(p.windows(2).all(|w| w[0] <= w[1] * 1.001), "percentiles are ordered: {p:?}");
        assert!(l.p99_999_us <= l.max_us * 1.001, "p99.999 {} <= max {}", l.p99_999_us, l.max_us);
        assert!(l.samples > 0);
    }
    r
}
