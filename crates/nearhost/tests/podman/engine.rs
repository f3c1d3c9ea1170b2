//! A real Podman per test, with everything it keeps in a temporary
//! directory: its own `containers.conf` and `storage.conf` (vfs driver),
//! given to every `podman` — the tests' and the one `nearhost attach` runs —
//! through `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`. The image is
//! busybox, imported from a tarball (no registry). Two engines:
//!
//! - [`Podman::start`]: Debian 12's podman 4.3 on this machine, with the CNI
//!   network backend and nearhost as the only CNI plugin directory;
//! - [`Podman::start_5`]: Debian 13's Podman 5 with netavark, in a trixie root
//!   ([`images::debian_root`]) entered through a mount namespace of its own:
//!   the root bind-mounted onto itself (Podman remounts `/`), `/proc`, `/sys`,
//!   `/dev` from the host, fresh `/run` and `/tmp`, the engine's directory at
//!   `/work`, and the compiled `nearhost` at
//!   `/usr/libexec/netavark/nearhost`, the plugin directory Podman searches by
//!   default. A holder process keeps that namespace alive for the test; each
//!   `podman` enters it (`nsenter --mount`) and chroots into the root. runc
//!   with cgroupfs, because crun refuses this machine's hybrid cgroups.
//!
//! Every `podman` runs with `nsenter --net` in the engine's own test host
//! namespace ([`Podman::host`]): Podman runs its network plugins in the
//! namespace it runs in — CNI ADD / netavark setup on `run`/`start`, DEL /
//! teardown on `stop`/`rm` — so all of them must happen there (the host's
//! `eth0` is one end of the test's veth, never this machine's NIC). `nsenter`
//! and not `ip netns exec`: the latter remounts `/sys`, which hides the cgroup
//! mounts runc needs.
//!
//! Podman keeps its locks in one shared-memory segment per machine and
//! reinitialises it when a fresh store starts, so two Podmans with different
//! stores must not run at once (the trixie root shares the host's `/dev/shm`):
//! each test holds the engine's lock until its engine is dropped. Dropping
//! removes every container (so Podman runs the DEL / teardown for those a
//! failed test left) before the host namespace goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use crate::images::{self, busybox_rootfs_tar, unmount_under, IMAGE};
use crate::support::{bin, Host};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Podman {
    /// The test host Podman runs in (`Host::new(net)`).
    pub host: Host,
    dir: tempfile::TempDir,
    /// Podman 5: the Debian 13 root and the process holding its mount namespace.
    root: Option<(PathBuf, Child)>,
    _turn: MutexGuard<'static, ()>,
}

/// What Podman 5's root is built with.
const TRIXIE_PACKAGES: &[&str] =
    &["podman", "runc", "busybox-static", "iproute2", "iputils-ping", "nftables"];

impl Podman {
    /// An engine whose host is `Host::new(net)` (198.18.NET.0/24).
    pub fn start(net: u8) -> Podman {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            Path::new("/usr/bin/podman").exists(),
            "podman is not installed (apt-get install podman; scripts/setup.sh does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["cni-bin", "net.d", "root", "runroot", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(bin(), d.join("cni-bin/nearhost")).unwrap();
        // runc cannot raise rlimits here (no CAP_SYS_RESOURCE in this sandbox)
        // and Podman's defaults for root ask for more than we hold: give the
        // containers our own limits (Podman lowers its NPROC to 32768 itself).
        let nofile = rlimit_nofile();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=32768:32768\"]\n\n\
                 [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{0}/cni-bin\"]\nnetwork_config_dir = \"{0}/net.d\"\n\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{0}/tmp\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/runroot\"\n", d.display()),
        )
        .unwrap();
        let p = Podman { host: Host::new(net), dir, root: None, _turn: turn };
        p.import_busybox();
        p
    }

    /// Podman 5 (Debian 13's, netavark backend) whose host is `Host::new(net)`.
    pub fn start_5(net: u8) -> Podman {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let root = images::debian_root("trixie", TRIXIE_PACKAGES);
        let plugin = root.join("usr/libexec/netavark/nearhost");
        if !plugin.exists() {
            std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
            std::fs::write(&plugin, b"").unwrap(); // the mount point for bin()
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["networks", "root", "runroot", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let nofile = rlimit_nofile();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=32768:32768\"]\n\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"/work/networks\"\n\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"/work/tmp\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"/work/root\"\nrunroot = \"/work/runroot\"\n",
        )
        .unwrap();
        let r = root.display();
        let script = format!(
            "set -e; mount --bind {r} {r}; mount -t proc proc {r}/proc; mount --rbind /sys {r}/sys; \
             mount --rbind /dev {r}/dev; mount -t tmpfs tmpfs {r}/run; mount -t tmpfs tmpfs {r}/tmp; \
             mount -t tmpfs tmpfs {r}/var/tmp; mkdir -p {r}/work; mount --bind {d} {r}/work; \
             mount --bind {bin} {r}/usr/libexec/netavark/nearhost; echo ready; exec sleep 86400",
            d = d.display(),
            bin = bin()
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut ready = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
            &mut ready,
        );
        if ready.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!("the trixie root's mount namespace: {}", String::from_utf8_lossy(&out.stderr));
        }
        let p = Podman { host: Host::new(net), dir, root: Some((root, holder)), _turn: turn };
        p.import_busybox();
        p
    }

    fn import_busybox(&self) {
        let tar = busybox_rootfs_tar(self.dir.path());
        let tar = self.visible(&tar);
        self.must(&["import", "--change", "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin", &tar, IMAGE]);
    }

    /// `path` (under the engine's directory) as Podman sees it.
    fn visible(&self, path: &Path) -> String {
        match &self.root {
            None => path.display().to_string(),
            Some(_) => {
                let rel = path.strip_prefix(self.dir.path()).expect("under the engine's directory");
                format!("/work/{}", rel.display())
            }
        }
    }

    /// The environment that points a `podman` at this engine's files.
    pub fn env(&self) -> [(&'static str, String); 2] {
        let d = match &self.root {
            None => self.dir.path().display().to_string(),
            Some(_) => "/work".into(),
        };
        [
            ("CONTAINERS_CONF", format!("{d}/containers.conf")),
            ("CONTAINERS_STORAGE_CONF", format!("{d}/storage.conf")),
        ]
    }

    /// Where Podman reads CNI network lists (`NAME.conflist`).
    pub fn net_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// `podman ARGS`, in the engine's host namespace.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.ns.path()));
        match &self.root {
            None => cmd.arg("podman"),
            // --root: setns into a mount namespace resets the root directory
            // to the namespace's; the holder's root is ours (the fresh-root
            // check runs this suite chrooted), so take the holder's.
            Some((root, holder)) => cmd
                .arg(format!("--target={}", holder.id()))
                .args(["--mount", "--root"])
                .arg("chroot")
                .arg(root)
                .arg("/usr/bin/podman")
                .env("PODMAN_IGNORE_CGROUPSV1_WARNING", "1")
                .env("TMPDIR", "/work/tmp"),
        };
        cmd.args(args).envs(self.env());
        cmd.output().expect("run podman")
    }

    #[track_caller]
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d --name NAME --network NETWORK [EXTRA] IMAGE sleep 3600`
    /// the container's ID.
    #[track_caller]
    pub fn run(&self, name: &str, network: &str, extra: &[&str]) -> String {
        self.must(&Self::run_args(name, network, extra))
    }

    /// [`Podman::run`] that may fail: its output.
    pub fn try_run(&self, name: &str, network: &str, extra: &[&str]) -> Output {
        self.podman(&Self::run_args(name, network, extra))
    }

    fn run_args<'a>(name: &'a str, network: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "3600"]);
        args
    }

    /// `podman exec NAME ARGS`.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        self.podman(&[&["exec", name][..], args].concat())
    }

    /// One ping from inside the container, retried (the first may wait for ARP).
    pub fn ping(&self, name: &str, ip: &str) -> bool {
        (0..3).any(|_| self.exec(name, &["ping", "-c", "1", "-W", "1", ip]).status.success())
    }

    /// `ip -o addr show dev IFNAME` inside the container.
    pub fn addrs(&self, name: &str, ifname: &str) -> String {
        String::from_utf8_lossy(
            &self.exec(name, &["ip", "-o", "addr", "show", "dev", ifname]).stdout,
        )
        .into_owned()
    }

    /// The network namespace Podman made for the container (`/run/netns/…`),
    /// as a path this process can open: Podman 5's `/run` is the trixie
    /// root's, seen through the holder's root directory.
    pub fn sandbox(&self, name: &str) -> String {
        let key = self.must(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name]);
        match &self.root {
            None => key,
            Some((root, holder)) => format!("/proc/{}/root{}{key}", holder.id(), root.display()),
        }
    }

    /// `ARGS` (a host tool) in the container's network namespace.
    pub fn in_sandbox(&self, name: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.sandbox(name)))
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// `podman rm -f -t 0 NAMES…` (the busybox `sleep` ignores SIGTERM).
    pub fn rm(&self, names: &[&str]) {
        self.must(&[&["rm", "-f", "-t", "0"][..], names].concat());
    }
}

fn rlimit_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_max
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        if let Some((_, holder)) = &mut self.root {
            // The namespace (and every mount in it) goes with its last process.
            let _ = holder.kill();
            let _ = holder.wait();
        }
        unmount_under(self.dir.path());
    }
}
