//! Fixtures of the attach suites: the `nearhost` CLI run inside a test "host"
//! namespace with its own definition and state directories, plain processes in
//! network namespaces of their own, and a snapshot of everything an attach may
//! change (to prove a failed one changed nothing).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// What one CLI call printed.
#[derive(Debug)]
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr)
        })
    }

    /// Asserts failure with error `kind` and a message containing every needle.
    #[track_caller]
    pub fn expect_err(&self, kind: &str, needles: &[&str]) {
        assert!(!self.ok, "expected a {kind} error, got success: {}", self.stdout);
        let v = self.json();
        assert_eq!(v["error"]["kind"], kind, "wrong kind: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        for n in needles {
            assert!(msg.contains(n), "message {msg:?} should mention {n:?}");
        }
        assert!(self.stderr.contains(msg), "stderr should carry the message too: {}", self.stderr);
    }
}

/// `nearhost` as a user runs it on a host: here inside the test's host
/// namespace, with definitions and records in a temporary directory.
pub struct Cli {
    pub host: String,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(host: &Netns) -> Cli {
        let dir = tempfile::tempdir().expect("tempdir");
        // No test may ask the machine's own engines by accident: both point at
        // sockets that do not exist (a suite with an engine points them at it).
        let env = vec![
            ("DOCKER_HOST".to_string(), format!("unix://{}/no-docker.sock", dir.path().display())),
            (
                "CONTAINER_HOST".to_string(),
                format!("unix://{}/no-podman.sock", dir.path().display()),
            ),
        ];
        Cli { host: host.name.clone(), dir, env }
    }

    pub fn net_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Names of the attachment record files.
    pub fn records(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.state_dir().join("attachments")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn without_env(mut self, k: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self
    }

    pub fn run(&self, args: &[&str]) -> CliOut {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host, bin()]).args(args).env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("NEARHOST_NET_DIR", self.net_dir()).env("NEARHOST_STATE_DIR", self.state_dir());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run nearhost");
        CliOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs with `--json`, asserting success.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(&[args, &["--json"]].concat());
        assert!(out.ok, "nearhost {args:?} failed: {}{}", out.stdout, out.stderr);
        out.json()
    }

    /// Runs with `--json`, expecting failure.
    pub fn fails(&self, args: &[&str]) -> CliOut {
        self.run(&[args, &["--json"]].concat())
    }

    /// `net create NAME --datapath D --subnet 198.18.NET.0/24 --range .100-.199
    /// --data-dir <the host's IPAM dir> EXTRA…`.
    #[track_caller]
    pub fn net_create(
        &self, h: &Host, name: &str, datapath: &str, net: u8, extra: &[&str],
    ) -> Value {
        let data = h.data_dir();
        let subnet = format!("198.18.{net}.0/24");
        let range = format!("198.18.{net}.100-198.18.{net}.199");
        let mut args = vec![
            "net", "create", name, "--datapath", datapath, "--subnet", &subnet, "--range", &range,
            "--data-dir", &data,
        ];
        args.extend_from_slice(extra);
        self.json(&args)
    }
}

/// `ip netns attach`: a name under /run/netns for a process's namespace, so the
/// `Netns` helpers (links, addresses, ping) work on it. Dropping the handle
/// only removes the name.
pub fn netns_of_pid(pid: u32) -> Netns {
    let name = format!("nht{}x{}p", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    must("ip", &["netns", "attach", &name, &pid.to_string()]);
    Netns { name }
}

/// A plain process (`unshare --net sleep`) in a network namespace of its own,
/// killed on drop.
pub struct Sleeper {
    child: Child,
}

impl Default for Sleeper {
    fn default() -> Self {
        Sleeper::new()
    }
}

impl Sleeper {
    pub fn new() -> Sleeper {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let s = Sleeper { child };
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // unshare runs in the child before it execs sleep: wait until it has.
        while std::fs::read_link(format!("/proc/{}/ns/net", s.pid())).is_ok_and(|ns| ns == ours) {
            assert!(
                Instant::now() < deadline,
                "unshare --net did not give the process its own namespace"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything an attach can change: links on the host and in the target,
/// the network's IPAM state, and nearhost's records.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    host: Vec<String>,
    target: Vec<String>,
    ipam: Option<String>,
    records: Vec<String>,
}

pub fn snapshot(h: &Host, target: &Netns, net: &str, cli: &Cli) -> Snapshot {
    Snapshot {
        host: h.ns.link_names(),
        target: target.link_names(),
        ipam: h.state_file(net),
        records: cli.records(),
    }
}
