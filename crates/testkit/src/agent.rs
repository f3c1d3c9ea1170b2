//! A small cluster in namespaces: a switch namespace with a bridge, real etcd
//! members (Debian's etcd-server) in namespaces of their own, and hosts whose
//! NIC is plugged into the switch, each running `nearhost agent`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::*;

pub const NET: &str = "198.18.200";

/// A process killed (and reaped) on drop; SIGCONT first in case it was stopped.
pub struct Proc {
    pub child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        if self.pid() > 0 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// SIGKILL and reap, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// The switch every host and etcd member is cabled to.
pub struct Switch {
    pub ns: Netns,
    ports: std::cell::Cell<u8>,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}

impl Switch {
    pub fn new() -> Switch {
        let ns = Netns::new("sw");
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Switch { ns, ports: std::cell::Cell::new(0) }
    }

    /// Cables `host` to the switch: its `eth0` gets NET.last/24.
    pub fn plug(&self, host: &Netns, last: u8) {
        let n = self.ports.get() + 1;
        self.ports.set(n);
        let port = format!("sp{n}");
        self.ns.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host.name,
        ]);
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["addr", "add", &format!("{NET}.{last}/24"), "dev", "eth0"]);
    }
}

/// One etcd member in a namespace of its own.
pub struct EtcdMember {
    pub ns: Netns,
    pub proc: Proc,
    pub name: String,
    pub ip: String,
    pub data: tempfile::TempDir,
    cluster: String,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    pub fn start(&mut self, state: &str) {
        let out = std::fs::File::create(self.data.path().join("etcd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "etcd", "--name", &self.name])
            .arg(format!("--data-dir={}", self.data.path().join("data").display()))
            .arg(format!("--listen-client-urls=http://{}:2379", self.ip))
            .arg(format!("--advertise-client-urls=http://{}:2379", self.ip))
            .arg(format!("--listen-peer-urls=http://{}:2380", self.ip))
            .arg(format!("--initial-advertise-peer-urls=http://{}:2380", self.ip))
            .arg(format!("--initial-cluster={}", self.cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .args([
                "--heartbeat-interval=50", "--election-timeout=500", "--logger=zap",
                "--log-outputs=stderr",
            ])
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        self.proc = Proc { child: Some(child) };
    }

    pub fn healthy(&self) -> bool {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns.name,
                "etcdctl",
                "--endpoints",
                &self.client_url(),
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "endpoint",
                "health",
            ],
        )
        .status
        .success()
    }
}

/// A cluster of `members` etcd members on the switch (NET.1, .2, .3).
pub fn etcd_cluster(sw: &Switch, members: u8) -> Vec<EtcdMember> {
    let names: Vec<(String, String)> =
        (1..=members).map(|i| (format!("e{i}"), format!("{NET}.{i}"))).collect();
    let cluster =
        names.iter().map(|(n, ip)| format!("{n}=http://{ip}:2380")).collect::<Vec<_>>().join(",");
    let mut out = Vec::new();
    for (i, (name, ip)) in names.into_iter().enumerate() {
        let ns = Netns::new("etcd");
        sw.plug(&ns, (i + 1) as u8);
        let mut m = EtcdMember {
            ns,
            proc: Proc { child: None },
            name,
            ip,
            data: tempfile::tempdir().unwrap(),
            cluster: cluster.clone(),
        };
        m.start("new");
        out.push(m);
    }
    assert!(
        eventually(Duration::from_secs(30), || out[0].healthy()),
        "etcd did not become healthy: {}",
        std::fs::read_to_string(out[0].data.path().join("etcd.log")).unwrap_or_default()
    );
    out
}

pub fn endpoints(members: &[EtcdMember]) -> String {
    members.iter().map(|m| m.client_url()).collect::<Vec<_>>().join(",")
}

/// A host with its agent.
pub struct Node {
    pub ns: Netns,
    pub name: String,
    pub ip: String,
    pub data: tempfile::TempDir,
    pub agent: Proc,
    pub mode: String,
}

impl Node {
    pub fn new(sw: &Switch, i: u8, mode: &str) -> Node {
        let ns = Netns::new("n");
        let last = 10 + i;
        sw.plug(&ns, last);
        Node {
            ns,
            name: format!("node{i}"),
            ip: format!("{NET}.{last}"),
            data: tempfile::tempdir().unwrap(),
            agent: Proc { child: None },
            mode: mode.into(),
        }
    }

    pub fn data_dir(&self) -> String {
        self.data.path().display().to_string()
    }

    /// Starts the agent; waits until it is ready (its /readyz answers 200).
    pub fn start_agent(&mut self, etcd: &str, extra: &[&str]) {
        let child = self.agent_command(etcd, extra).spawn().expect("start agent");
        self.agent = Proc { child: Some(child) };
        self.wait_ready();
    }

    /// The agent's command line (test defaults: 3 s session lease, 6 s blocks
    /// lease, 2 s release grace; `extra` can override the last two), logging
    /// into the node's `agent.log`.
    pub fn agent_command(&self, etcd: &str, extra: &[&str]) -> Command {
        self.agent_command_under(&[], etcd, extra)
    }

    /// Starts the agent under `wrapper` (e.g. `setpriv` with fewer
    /// capabilities) inside the node; waits until it is ready.
    pub fn start_agent_under(&mut self, wrapper: &[&str], etcd: &str, extra: &[&str]) {
        let child = self.agent_command_under(wrapper, etcd, extra).spawn().expect("start agent");
        self.agent = Proc { child: Some(child) };
        self.wait_ready();
    }

    /// [`Node::agent_command`], the agent run by `wrapper ARGS… nearhost agent …`.
    pub fn agent_command_under(&self, wrapper: &[&str], etcd: &str, extra: &[&str]) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("agent.log"))
            .unwrap();
        let dd = self.data_dir();
        let mut args = vec!["netns", "exec", &self.ns.name];
        args.extend_from_slice(wrapper);
        args.extend([
            bin(),
            "agent",
            "--etcd",
            etcd,
            "--node-name",
            &self.name,
            "--node-ip",
            &self.ip,
            "--data-dir",
            &dd,
            "--lease-ttl",
            "3",
            "--mode",
            &self.mode,
            "--vni",
            "7",
            "--underlay",
            "eth0",
        ]);
        if !extra.contains(&"--release-grace") {
            args.extend(["--release-grace", "2"]);
        }
        if !extra.contains(&"--block-lease-ttl") {
            args.extend(["--block-lease-ttl", "6"]);
        }
        args.extend_from_slice(extra);
        let mut cmd = Command::new("ip");
        cmd.args(&args).env("NEARHOST_LOG", "info").stdout(Stdio::null()).stderr(log);
        cmd
    }

    /// Waits until the agent answers /readyz with 200 (at most 20 s).
    pub fn wait_ready(&self) {
        let ready = eventually(Duration::from_secs(20), || self.http("/readyz").0 == 200);
        assert!(ready, "agent {} never became ready; log:\n{}", self.name, self.agent_log());
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("agent.log")).unwrap_or_default()
    }

    /// GET on the agent's metrics listener inside the host: (status, body).
    pub fn http(&self, path: &str) -> (u16, String) {
        let script = format!(
            "import socket\ntry:\n s=socket.create_connection(('127.0.0.1',9464),timeout=2)\n s.sendall(b'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n d=b''\n while True:\n  b=s.recv(65536)\n  if not b: break\n  d+=b\n print(d.decode())\nexcept OSError: print('HTTP/1.1 000 down')"
        );
        let out = self.ns.exec(&["python3", "-c", &script]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// A metric's value (summed over label sets).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http("/metrics");
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `nearhost agent status` of this node's agent.
    pub fn status(&self) -> Value {
        let out = self.ns.exec(&[bin(), "agent", "status", "--data-dir", &self.data_dir()]);
        assert!(out.status.success(), "agent status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("agent status is JSON")
    }

    pub fn conf(&self, pool: &str) -> Value {
        let ipam = json!({"type": "nearhost", "pool": pool, "dataDir": self.data_dir()});
        let extra =
            if self.mode == "vxlan" { json!({"vni": 7, "underlay": "eth0"}) } else { json!({}) };
        netconf("1.1.0", &format!("net-{}", self.mode), &self.mode, ipam, extra)
    }
}

/// A switch, `members` etcd members on it, and pool `name` created on
/// `subnet` in blocks of /`block`; with the etcd endpoints.
pub fn etcd_with_pool(
    members: u8, name: &str, subnet: &str, block: u8,
) -> (Switch, Vec<EtcdMember>, String) {
    let sw = Switch::new();
    let etcd = etcd_cluster(&sw, members);
    let ep = endpoints(&etcd);
    let block = block.to_string();
    let out =
        pool_cmd(&etcd[0].ns, &ep, &["create", name, "--subnet", subnet, "--block-size", &block]);
    assert!(out.status.success(), "pool create: {}", String::from_utf8_lossy(&out.stderr));
    (sw, etcd, ep)
}

/// Writes `key` = `value` into etcd as any client with write access could
/// (etcdctl, from inside `ns`): forged records.
pub fn etcd_put(ns: &Netns, etcd_url: &str, key: &str, value: &str) {
    let out = ns.exec(&["etcdctl", "--endpoints", etcd_url, "put", key, value]);
    assert!(out.status.success(), "etcdctl put {key}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `nearhost pool ARGS --etcd E`, run inside `ns`.
pub fn pool_cmd(ns: &Netns, etcd: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec![bin(), "pool"];
    full.extend_from_slice(args);
    full.extend(["--etcd", etcd]);
    ns.exec(&full)
}

/// Blocks of `pool` as `nearhost pool ls --json` reports them: (claimed, nodes).
pub fn pool_usage(ns: &Netns, etcd: &str, pool: &str) -> (u64, Vec<String>) {
    let out = pool_cmd(ns, etcd, &["ls", "--json"]);
    assert!(out.status.success(), "pool ls: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap_or_else(|| panic!("pool {pool} missing: {v}"));
    (
        p["blocks_claimed"].as_u64().unwrap(),
        p["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect(),
    )
}
