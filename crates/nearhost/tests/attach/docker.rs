//! A real Docker engine per test: `containerd` and `dockerd` from Debian's
//! packages with every root (data, exec, state, pid file, sockets, config) in a
//! temporary directory, no bridge, no iptables, the vfs storage driver; a
//! busybox image made with `docker import` (no registry is needed). Stopped on
//! drop, also when the test panics. If the engine cannot start, the test fails
//! with its log.
//!
//! containerd is started here rather than by dockerd: dockerd gives the
//! containerd it supervises 10 s to come up, which a loaded machine or the
//! kernel lab's emulated CPUs do not always meet; here it gets as long as it
//! needs, and dockerd finds it ready.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::attach_support::Cli;
pub use crate::images::IMAGE;
use crate::images::{busybox_rootfs_tar, unmount_under};
use crate::support::{terminate, Host};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How long the engine may take to start (the kernel lab has no KVM).
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Dockerd {
    dir: tempfile::TempDir,
    containerd: Child,
    dockerd: Option<Child>,
    /// `unix://…/docker.sock`, for DOCKER_HOST.
    pub host: String,
}

/// Debian's client first: it matches Debian's dockerd.
fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

fn installed(candidates: &[&'static str], package: &str) -> &'static str {
    let found = candidates.iter().copied().find(|p| Path::new(p).exists());
    found
        .unwrap_or_else(|| panic!("{} is not installed (apt-get install {package})", candidates[0]))
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let f = std::fs::File::create(path).unwrap();
    (Stdio::from(f.try_clone().unwrap()), Stdio::from(f))
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let containerd = installed(&["/usr/bin/containerd", "/usr/sbin/containerd"], "containerd");
        let dockerd = installed(&["/usr/sbin/dockerd", "/usr/bin/dockerd"], "docker.io");
        // Short path: containerd's sockets live in it, and Unix socket paths
        // are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("nhd").tempdir_in("/tmp").expect("tempdir");
        let p = |name: &str| dir.path().join(name);
        // Our own config: the machine's /etc/containerd/config.toml may enable
        // CRI or point elsewhere.
        let sock = p("containerd.sock");
        let toml = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
            p("containerd-root"), p("containerd-state"), sock, p("containerd.sock.ttrpc")
        );
        std::fs::write(p("containerd.toml"), toml).unwrap();
        let (out, err) = log_file(&p("containerd.log"));
        let child = Command::new(containerd)
            .arg("--config")
            .arg(p("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let child = child.unwrap_or_else(|e| panic!("cannot run {containerd}: {e}"));
        let host = format!("unix://{}", p("docker.sock").display());
        let mut d = Dockerd { dir, containerd: child, dockerd: None, host };
        d.wait_for(
            |d| UnixStream::connect(&sock).is_ok() && d.containerd_answers(&sock),
            "containerd",
            "containerd.log",
        );
        d.spawn_dockerd(dockerd, &sock);
        d.wait_for(
            |d| d.docker(&["version", "--format", "{{.Server.Version}}"]).status.success(),
            "dockerd",
            "dockerd.log",
        );
        d
    }

    fn containerd_answers(&self, sock: &Path) -> bool {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(sock)
            .arg("version")
            .stdin(Stdio::null())
            .output();
        out.is_ok_and(|o| o.status.success())
    }

    fn spawn_dockerd(&mut self, dockerd: &str, containerd_sock: &Path) {
        let p = |name: &str| self.dir.path().join(name);
        // dockerd 20.10 writes a trust key to /etc/docker unless told otherwise.
        let config = serde_json::json!({"deprecated-key-path": p("key.json")});
        std::fs::write(p("daemon.json"), config.to_string()).unwrap();
        let (out, err) = log_file(&p("dockerd.log"));
        let ns = format!("nht{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(p("daemon.json"))
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("docker.pid"))
            .arg("--containerd")
            .arg(containerd_sock)
            .args(["-H", &self.host, "--bridge=none", "--iptables=false", "--ip6tables=false"])
            // vfs needs no mounts: overlay2 fails where /tmp is itself an
            // overlay (the kernel lab), and dockerd's fallback, devicemapper,
            // takes the only loop device. The busybox image is 2 MB.
            .args(["--storage-driver", "vfs"])
            .args([
                "--containerd-namespace",
                &ns,
                "--containerd-plugins-namespace",
                &format!("{ns}p"),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {dockerd}: {e}"));
        self.dockerd = Some(child);
    }

    /// Polls `ready` until it holds; fails with the daemon's log if the daemon
    /// exits or the time is up.
    fn wait_for(&mut self, ready: impl Fn(&Self) -> bool, what: &str, log: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = if what == "containerd" {
                Some(&mut self.containerd)
            } else {
                self.dockerd.as_mut()
            };
            if let Some(Ok(Some(status))) = child.map(|c| c.try_wait()) {
                panic!("{what} exited ({status}) before it was ready:\n{}", self.log_tail(log));
            }
            if ready(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} was not ready within {START_TIMEOUT:?}:\n{}",
                self.log_tail(log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- last lines of {log}:\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_cli())
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .stdin(Stdio::null())
            .output()
            .expect("run the docker client")
    }

    /// Runs `docker ARGS`, asserting success; returns stdout, trimmed.
    #[track_caller]
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail("dockerd.log")
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A busybox image from Debian's busybox-static, imported as `tag`.
    pub fn import_busybox(&self, tag: &str) {
        let tar = busybox_rootfs_tar(self.dir.path());
        self.must(&[
            "import",
            "-c",
            "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin",
            &tar.display().to_string(),
            tag,
        ]);
    }

    /// `docker run -d --network none --name NAME IMAGE sleep 3600`.
    #[track_caller]
    pub fn run(&self, name: &str) -> Container {
        let id =
            self.must(&["run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "3600"]);
        let pid: u32 = self.must(&["inspect", "-f", "{{.State.Pid}}", &id]).parse().expect("a PID");
        Container { id, pid }
    }

    /// `docker exec NAME ARGS`.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        self.docker(&[&["exec", name][..], args].concat())
    }

    /// One ping from inside the container, retried (the first may wait for ARP).
    pub fn ping(&self, name: &str, ip: &str) -> bool {
        (0..3).any(|_| self.exec(name, &["ping", "-c", "1", "-W", "1", ip]).status.success())
    }

    /// `ip -o addr` inside the container.
    pub fn addrs(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.exec(name, &["ip", "-o", "addr"]).stdout).into_owned()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn stop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut d) = self.dockerd.take() {
            terminate(&mut d, Duration::from_secs(30));
        }
        terminate(&mut self.containerd, Duration::from_secs(30));
        unmount_under(self.dir.path());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A started engine with the busybox image, a test host (see `Host::new`), and
/// the CLI pointed at both, with network `name` of `datapath` on 198.18.SUBNET.0/24.
pub fn engine_host_and_network(
    net: u8, name: &str, datapath: &str, subnet: u8, extra: &[&str],
) -> (Dockerd, Host, Cli) {
    let d = Dockerd::start();
    d.import_busybox(IMAGE);
    let h = Host::new(net);
    let cli = Cli::new(&h.ns).env("DOCKER_HOST", &d.host);
    cli.net_create(&h, name, datapath, subnet, extra);
    (d, h, cli)
}

/// A running container.
pub struct Container {
    pub id: String,
    pub pid: u32,
}
