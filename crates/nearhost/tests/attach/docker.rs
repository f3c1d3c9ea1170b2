//! A real Docker engine per test: `dockerd` from Debian's docker.io with every
//! root (data, exec, pid file, socket, config) in a temporary directory, no
//! bridge and no iptables, its own containerd namespace; a busybox image made
//! with `docker import` (no registry is needed). Stopped on drop, also when the
//! test panics. If dockerd cannot start, the test fails with its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const IMAGE: &str = "nearhost-test/busybox:latest";

pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
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

impl Dockerd {
    pub fn start() -> Dockerd {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"].into_iter().find(|p| Path::new(p).exists());
        let dockerd = dockerd.unwrap_or_else(|| panic!("dockerd is not installed (apt-get install docker.io)"));
        // Short path: containerd's sockets live under the exec root, and Unix
        // socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("nhd").tempdir_in("/tmp").expect("tempdir");
        let p = |name: &str| dir.path().join(name);
        // dockerd 20.10 writes a trust key to /etc/docker unless told otherwise.
        let config = serde_json::json!({"deprecated-key-path": p("key.json")});
        std::fs::write(p("daemon.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(p("dockerd.log")).unwrap();
        let ns = format!("nht{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let host = format!("unix://{}", p("docker.sock").display());
        let child = Command::new(dockerd)
            .arg("--config-file").arg(p("daemon.json"))
            .arg("--data-root").arg(p("data"))
            .arg("--exec-root").arg(p("exec"))
            .arg("--pidfile").arg(p("docker.pid"))
            .args(["-H", &host, "--bridge=none", "--iptables=false", "--ip6tables=false"])
            // A system containerd, if one runs, is shared: keep our containers apart.
            .args(["--containerd-namespace", &ns, "--containerd-plugins-namespace", &format!("{ns}p")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {dockerd}: {e}"));
        let mut d = Dockerd { dir, child, host };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dockerd exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            if self.docker(&["version", "--format", "{{.Server.Version}}"]).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "dockerd did not answer on {} within 90 s:\n{}", self.host, self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
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
        assert!(out.status.success(), "docker {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log_tail());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A busybox image from Debian's busybox-static: `/bin/busybox` plus a
    /// link for every applet, imported as `tag`.
    pub fn import_busybox(&self, tag: &str) {
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "apt-get install busybox-static");
        let root = self.dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let list = Command::new(busybox).arg("--list-full").output().expect("busybox --list-full");
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "bin/busybox") {
            let link = root.join(applet);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
        }
        let tar = self.dir.path().join("rootfs.tar");
        let out = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").output().expect("tar");
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        let tar_s = tar.display().to_string();
        self.must(&["import", "-c", "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin", &tar_s, tag]);
    }

    /// `docker run -d --network none --name NAME IMAGE sleep 3600`.
    #[track_caller]
    pub fn run(&self, name: &str) -> Container {
        let id = self.must(&["run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "3600"]);
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
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unmount_under(self.dir.path());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lazily unmounts whatever dockerd left mounted in `dir` (overlays, netns
/// bind mounts), deepest first, so that the directory can be removed.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| Path::new(m).starts_with(dir)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: a valid C string; MNT_DETACH only detaches the mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A running container.
pub struct Container {
    pub id: String,
    pub pid: u32,
}
