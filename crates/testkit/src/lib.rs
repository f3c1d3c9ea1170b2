//! nearhost's test kit, shared by every crate's tests and the benchmarks:
//! namespaces that delete themselves, a "host" whose NIC is one end of a veth
//! pair (the other end is the gateway/outside), and a runner that calls the
//! compiled binary through the CNI protocol exactly as a runtime does.
//! Assertions read the kernel through iproute2, independently of nearhost's
//! own netlink code.
//!
//! - this file: commands, namespaces, hosts, cables, CNI calls, `eventually`
//! - [`agent`]: an etcd cluster and hosts running `nearhost agent`
//! - [`attach`]: the `nearhost attach` CLI and long-lived target processes
//! - [`bench`]: `nearhost bench` servers and clients, reports
//! - [`images`]: a busybox image for the container-engine suites
//! - [`lab`]: the demo lab's namespaces and processes
//! - [`nics`]: the kernel lab's emulated igb NICs (real PF/VF drivers)
//! - [`sriov`]: SR-IOV stand-ins (veth "VFs" behind a [`sysfs::FakeSysfs`])
//! - [`sysfs`]: the one fake sysfs tree
//! - [`tools`]: parsers of the reference tools' output (sockperf, iperf3, wrk)

pub mod agent;
pub mod attach;
pub mod bench;
pub mod fake_host;
pub mod images;
pub mod lab;
pub mod nics;
pub mod sriov;
pub mod sysfs;
pub mod tools;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The compiled `nearhost` binary: `NEARHOST_BIN`, or the one cargo built
/// beside the running test or bench binary (`target/PROFILE/deps/x` ->
/// `target/PROFILE/nearhost`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("NEARHOST_BIN") {
            return b;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe
            .parent()
            .and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) })
            .expect("a target directory");
        let b = dir.join("nearhost");
        assert!(
            b.is_file(),
            "{} is missing: build it first (cargo build --release -p nearhost) or set NEARHOST_BIN",
            b.display()
        );
        b.display().to_string()
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, returning its output (never panics on failure).
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command and asserts success; returns stdout.
pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace under /run/netns, deleted on drop (also when a test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("nht{}x{n}{role}", std::process::id());
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NS ARGS`, asserting success.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        must("ip", &full)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn links(&self) -> Vec<Value> {
        serde_json::from_str(&self.ip(&["-j", "-d", "link", "show"])).expect("ip -j link")
    }

    pub fn link(&self, name: &str) -> Option<Value> {
        self.links().into_iter().find(|l| l["ifname"] == name)
    }

    /// Names of all links but lo.
    pub fn link_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .links()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .filter(|n| n != "lo")
            .collect();
        names.sort();
        names
    }

    /// `ip/prefix` of every global address on `ifname`.
    pub fn addrs(&self, ifname: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.ip(&["-j", "addr", "show", "dev", ifname]))
            .expect("ip -j addr");
        v[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    pub fn routes(&self, v6: bool) -> Vec<Value> {
        let fam = if v6 { "-6" } else { "-4" };
        serde_json::from_str(&self.ip(&[fam, "-j", "route", "show"])).expect("ip -j route")
    }

    /// One ping, retried a few times (the first may wait for ARP/NDP).
    pub fn ping(&self, ip: &str) -> bool {
        let fam = if ip.contains(':') { "-6" } else { "-4" };
        (0..3).any(|_| self.exec(&["ping", fam, "-c", "1", "-W", "1", "-q", ip]).status.success())
    }

    /// Starts a command inside the namespace (the caller waits or kills it).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace")
    }

    /// GET `url` from inside the namespace; see [`http_get_in`].
    pub fn http_get(&self, url: &str) -> Option<String> {
        http_get_in(&self.name, url)
    }

    pub fn sysctl(&self, key: &str) -> String {
        let out = self.exec(&["sysctl", "-n", key]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Packets the link `ifname` has sent.
    pub fn tx_packets(&self, ifname: &str) -> u64 {
        let v: Value = serde_json::from_str(&self.ip(&["-s", "-j", "link", "show", ifname]))
            .expect("ip -s -j link");
        v[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets")
    }

    /// Loads an nftables script (`nft -f`), asserting success.
    pub fn nft(&self, script: &str) {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), script).expect("write the nft script");
        let out = self.exec(&["nft", "-f", f.path().to_str().expect("a UTF-8 path")]);
        assert!(out.status.success(), "nft: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    /// ClusterIPs as kube-proxy's nftables mode writes them (a verdict map
    /// from address . protocol . port to one chain per Service, one DNAT
    /// endpoint chain each; DNAT only, no masquerade of the test's own), for
    /// traffic that enters the host and that the host sends:
    /// `(virtual IP, port, backend IP, backend port)`, TCP.
    pub fn kube_proxy_services(&self, services: &[(&str, u16, &str, u16)]) {
        let elements: Vec<String> = services
            .iter()
            .enumerate()
            .map(|(i, (vip, port, _, _))| format!("{vip} . tcp . {port} : goto service-{i}"))
            .collect();
        let mut script = format!(
            "table ip kube-proxy {{
  map service-ips {{
    type ipv4_addr . inet_proto . inet_service : verdict
    elements = {{ {} }}
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
  }}
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }}
  chain nat-output {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
",
            elements.join(", ")
        );
        for (i, (_, _, backend, backend_port)) in services.iter().enumerate() {
            script.push_str(&format!(
                "  chain service-{i} {{
    numgen random mod 1 vmap {{ 0 : goto endpoint-{i} }}
  }}
  chain endpoint-{i} {{
    meta l4proto tcp dnat to {backend}:{backend_port}
  }}
"
            ));
        }
        script.push_str("}\n");
        self.nft(&script);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A host namespace with a NIC `eth0` (veth) whose other end `gw0` sits in a
/// gateway namespace holding `.1` of the test subnet (and `2001:2:N::1/64`).
pub struct Host {
    pub ns: Netns,
    pub gw: Netns,
    pub data: tempfile::TempDir,
    pub net: u8,
}

impl Host {
    /// `net` picks 198.18.NET.0/24 and 2001:2:NET::/64.
    pub fn new(net: u8) -> Host {
        let ns = Netns::new("h");
        let gw = Netns::new("g");
        ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "gw0", "netns", &gw.name]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["addr", "add", &format!("198.18.{net}.2/24"), "dev", "eth0"]);
        ns.ip(&["route", "add", "default", "via", &format!("198.18.{net}.1")]);
        gw.ip(&["link", "set", "gw0", "up"]);
        gw.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", "gw0"]);
        gw.ip(&["-6", "addr", "add", &format!("2001:2:{net}::1/64"), "dev", "gw0", "nodad"]);
        Host { ns, gw, data: tempfile::tempdir().expect("tempdir"), net }
    }

    pub fn data_dir(&self) -> String {
        self.data.path().display().to_string()
    }

    pub fn v4(&self, last: u8) -> String {
        format!("198.18.{}.{last}", self.net)
    }

    pub fn v6(&self, last: u16) -> String {
        format!("2001:2:{}::{last:x}", self.net)
    }

    /// An embedded-IPAM section for this host's IPv4 subnet.
    pub fn ipam_v4(&self) -> Value {
        json!({"type": "nearhost", "dataDir": self.data_dir(),
               "ranges": [[{"subnet": format!("198.18.{}.0/24", self.net), "rangeStart": self.v4(100),
                            "rangeEnd": self.v4(250), "gateway": self.v4(1)}]],
               "routes": [{"dst": "0.0.0.0/0"}]})
    }

    /// Dual-stack embedded IPAM.
    pub fn ipam_dual(&self) -> Value {
        let mut v = self.ipam_v4();
        v["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!([{"subnet": format!("2001:2:{}::/64", self.net),
            "rangeStart": self.v6(0x100), "rangeEnd": self.v6(0x1ff), "gateway": self.v6(1)}]));
        v["routes"].as_array_mut().unwrap().push(json!({"dst": "::/0"}));
        v
    }

    /// The embedded IPAM state of network `name` (empty when never written).
    pub fn reservations(&self, name: &str) -> Vec<String> {
        reservations_in(self.data.path(), name)
    }

    pub fn state_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.data.path().join(name).join("state.json")).ok()
    }
}

/// Two hosts whose NICs (`eth0` in each) are the ends of one veth "cable", on
/// 198.18.NET.0/24 (.1 and .2). `netem` shapes both directions (kernel lab).
pub struct Cable {
    pub a: Netns,
    pub b: Netns,
}

impl Cable {
    pub fn new(net: u8) -> Cable {
        let (a, b) = (Netns::new("a"), Netns::new("b"));
        a.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name]);
        for (ns, last) in [(&a, 1), (&b, 2)] {
            ns.ip(&["link", "set", "eth0", "up"]);
            ns.ip(&["addr", "add", &format!("198.18.{net}.{last}/24"), "dev", "eth0"]);
        }
        Cable { a, b }
    }

    /// Applies a netem qdisc (e.g. "delay 5ms loss 1%") on both ends.
    pub fn netem(&self, spec: &str) {
        for ns in [&self.a, &self.b] {
            let mut args = vec!["qdisc", "add", "dev", "eth0", "root", "netem"];
            args.extend(spec.split_whitespace());
            let out = ns.exec(&[&["tc"][..], &args[..]].concat());
            assert!(
                out.status.success(),
                "tc netem: {} (is sch_netem available?)",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A network config for `datapath` with `ipam` and extra top-level fields.
pub fn netconf(version: &str, name: &str, datapath: &str, ipam: Value, extra: Value) -> Value {
    let mut v = json!({"cniVersion": version, "name": name, "type": "nearhost", "datapath": datapath, "ipam": ipam});
    if let Value::Object(m) = extra {
        for (k, val) in m {
            v[k] = val;
        }
    }
    v
}

/// What one plugin call returned.
#[derive(Debug)]
pub struct CniOut {
    pub ok: bool,
    pub json: Value,
    pub stderr: String,
}

impl CniOut {
    pub fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }

    pub fn msg(&self) -> String {
        self.json["msg"].as_str().unwrap_or_default().to_string()
    }

    #[track_caller]
    pub fn expect_ok(self) -> Value {
        assert!(self.ok, "plugin failed: {} {}", self.json, self.stderr);
        self.json
    }

    /// Asserts failure with `code` and a message containing `needle`.
    #[track_caller]
    pub fn expect_err(&self, code: u64, needle: &str) {
        assert!(!self.ok, "expected error {code}, got success: {}", self.json);
        assert_eq!(self.code(), code, "wrong code; reply: {}", self.json);
        assert!(self.msg().contains(needle), "message {:?} should mention {needle:?}", self.msg());
    }
}

/// One CNI call, run inside the `host` namespace like a runtime there would.
pub struct Call<'a> {
    pub host: &'a Netns,
    pub env: Vec<(String, String)>,
}

impl<'a> Call<'a> {
    pub fn new(host: &'a Netns, command: &str, id: &str, netns: &str, ifname: &str) -> Self {
        let env = vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), id.into()),
            ("CNI_NETNS".into(), netns.into()),
            ("CNI_IFNAME".into(), ifname.into()),
            ("CNI_PATH".into(), "/usr/lib/cni:/opt/cni/bin".into()),
        ];
        Call { host, env }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn without(mut self, k: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self
    }

    /// Starts the plugin with `stdin` written and closed; `ip netns exec`
    /// execs it, so the child's PID is the plugin's (to kill it mid-call).
    pub fn spawn(&self, stdin: &[u8]) -> std::process::Child {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host.name, bin()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        // A plugin killed before reading its stdin closes the pipe: not our error.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child
    }

    pub fn run(&self, stdin: &[u8]) -> CniOut {
        CniOut::of(self.spawn(stdin).wait_with_output().unwrap())
    }

    pub fn conf(&self, conf: &Value) -> CniOut {
        self.run(conf.to_string().as_bytes())
    }
}

impl CniOut {
    /// What a finished plugin process said.
    pub fn of(out: Output) -> CniOut {
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
        };
        CniOut {
            ok: out.status.success(),
            json,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// ADD, returning the result (asserting success).
#[track_caller]
pub fn add(host: &Netns, id: &str, ctr: &Netns, conf: &Value) -> Value {
    Call::new(host, "ADD", id, &ctr.path(), "eth0").conf(conf).expect_ok()
}

/// DEL with prevResult, asserting success.
#[track_caller]
/// ADD of every container in `ctrs` at once, one plugin process each (as a
/// node starting a burst of pods); container `i` gets the ID `PREFIXi`.
pub fn add_parallel(host: &Netns, prefix: &str, ctrs: &[Netns], conf: &Value) -> Vec<Value> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| s.spawn(move || add(host, &format!("{prefix}{i}"), c, conf)))
            .collect();
        handles.into_iter().map(|t| t.join().expect("ADD thread")).collect()
    })
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut v =
        release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (major, minor)
}

pub fn del(host: &Netns, id: &str, netns: &str, conf: &Value, prev: Option<&Value>) {
    let mut c = conf.clone();
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    Call::new(host, "DEL", id, netns, "eth0").conf(&c).expect_ok();
}

/// CHECK with prevResult.
pub fn check(host: &Netns, id: &str, ctr: &Netns, conf: &Value, prev: &Value) -> CniOut {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    Call::new(host, "CHECK", id, &ctr.path(), "eth0").conf(&c)
}

/// The first address (without prefix) of a result.
pub fn result_ip(result: &Value, i: usize) -> String {
    result["ips"][i]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// GET `url` from inside network namespace `netns` (python3's urllib, 2 s
/// timeout): the body, trimmed, or None if the request failed.
pub fn http_get_in(netns: &str, url: &str) -> Option<String> {
    let get = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())";
    let out = run("ip", &["netns", "exec", netns, "python3", "-c", get, url]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A child process killed and reaped when the handle is dropped (also when
/// the test panics).
/// A bpffs of the test's own, mounted under /run before the plugin starts (so
/// `ip netns exec` children see it), unmounted on drop. The BPF datapaths pin
/// into it with `"bpf": {"pinPath": ...}`.
pub struct BpfFs {
    pub dir: std::path::PathBuf,
}

impl Default for BpfFs {
    fn default() -> Self {
        Self::new()
    }
}

impl BpfFs {
    pub fn new() -> BpfFs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::path::PathBuf::from(format!(
            "/run/nearhost-test-bpf/{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the bpffs mount point");
        let d = dir.to_str().expect("a UTF-8 path");
        must("mount", &["-t", "bpf", "bpf", d]);
        BpfFs { dir }
    }

    /// The pin root to give the plugin (a directory inside the mount).
    pub fn pin_path(&self) -> String {
        format!("{}/nearhost", self.dir.display())
    }

    /// What is pinned under the pin root, recursively, as relative paths.
    pub fn pins(&self) -> Vec<String> {
        fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        let root = std::path::PathBuf::from(self.pin_path());
        walk(&root, &root, &mut out);
        out.sort();
        out
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let d = self.dir.to_str().unwrap_or_default();
        let _ = run("umount", &["-l", d]);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP server answering `body` at `ip:port` inside `ns`.
pub fn serve_http(ns: &Netns, ip: &str, port: u16, body: &str) -> (KillOnDrop, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), format!("{body}\n")).unwrap();
    let child = ns.spawn(&[
        "python3",
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        ip,
        "--directory",
        dir.path().to_str().unwrap(),
    ]);
    let mut k = KillOnDrop(child);
    let url = format!("http://{ip}:{port}/");
    // Generous: under the kernel lab's emulation a Python start takes seconds.
    if !eventually(Duration::from_secs(40), || ns.http_get(&url).is_some()) {
        let _ = k.0.kill();
        let out = std::mem::replace(&mut k.0, std::process::Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        panic!(
            "server {url} did not start: {}\n{}\naddresses: {}\nroutes: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            ns.ip(&["-br", "addr"]),
            ns.ip(&["route"])
        );
    }
    (k, dir)
}

/// Stops a daemon: SIGTERM, up to `grace` to exit, then SIGKILL; reaped.
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The addresses the embedded IPAM holds for `network` under `data_dir`.
pub fn reservations_in(data_dir: &std::path::Path, network: &str) -> Vec<String> {
    let path = data_dir.join(network).join("state.json");
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let v: Value = serde_json::from_str(&text).expect("state.json is JSON");
    v["reservations"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The node-wide device claims of kind `kind` (`sriov-vfs`, `hostdev`) in
/// `claims_dir`: key → claim.
pub fn claims_in(claims_dir: &std::path::Path, kind: &str) -> serde_json::Map<String, Value> {
    match std::fs::read_to_string(claims_dir.join(format!("{kind}.json"))) {
        Ok(text) => serde_json::from_str(&text).expect("claims file is JSON"),
        Err(_) => serde_json::Map::new(),
    }
}

/// Polls `f` until true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the running kernel can create a link of `kind` (probed in a scratch namespace).
pub fn kernel_has(kind: &str) -> bool {
    if kind == "netkit" {
        // Debian 12's iproute2 predates netkit: ask the binary's own probe.
        // (Exit 3 only says something is in the way; the report is on stdout.)
        let out = run(bin(), &["doctor", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
        let probe = v["probes"].as_array().expect("probes").iter().find(|p| p["kind"] == "netkit");
        let state = probe.expect("doctor probes netkit")["support"]["state"].as_str().unwrap_or("");
        return matches!(state, "yes" | "module");
    }
    let ns = Netns::new("probe");
    let args: Vec<&str> = match kind {
        "ipvlan" => vec!["link", "add", "p0", "type", "veth", "peer", "name", "p1"],
        _ => vec![],
    };
    if !args.is_empty() {
        ns.ip(&args);
    }
    let probe: Vec<&str> = match kind {
        "ipvlan" => {
            vec!["-n", &ns.name, "link", "add", "link", "p0", "name", "iv0", "type", "ipvlan"]
        }
        "dummy" => vec!["-n", &ns.name, "link", "add", "d0", "type", "dummy"],
        "bond" => vec!["-n", &ns.name, "link", "add", "b0", "type", "bond"],
        other => panic!("unknown kernel feature {other}"),
    };
    run("ip", &probe).status.success()
}
