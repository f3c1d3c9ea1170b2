//! A real Podman (Debian's `podman`, runc, conmon) per test, with everything it
//! keeps in a temporary directory: its own `containers.conf` (CNI network
//! backend, nearhost as the only CNI plugin directory, the test's network
//! configuration directory) and `storage.conf` (vfs driver), given to every
//! `podman` — the tests' and the one `nearhost attach` runs — through
//! `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`. The image is busybox,
//! imported from a tarball (no registry).
//!
//! Every `podman` runs with `nsenter --net` in the engine's own test host
//! namespace ([`Podman::host`]): Podman executes CNI plugins in the namespace
//! it runs in — ADD on `run`/`start`, DEL on `stop`/`rm` — so all of them must
//! happen there (the host's `eth0` is one end of the test's veth, never this
//! machine's NIC). `nsenter` and not `ip netns exec`: the latter remounts
//! `/sys`, which hides the cgroup mounts runc needs.
//!
//! Podman keeps its locks in one shared-memory segment per machine and
//! reinitialises it when a fresh store starts, so two Podmans with different
//! stores must not run at once: each test holds [`Podman::start`]'s lock until
//! its engine is dropped. Dropping removes every container (so Podman runs
//! the CNI DEL for those a failed test left) before the host namespace goes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use crate::images::{busybox_rootfs_tar, unmount_under, IMAGE};
use crate::support::{bin, Host};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Podman {
    /// The test host Podman runs in (`Host::new(net)`).
    pub host: Host,
    dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

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
        let p = Podman { host: Host::new(net), dir, _turn: turn };
        let tar = busybox_rootfs_tar(p.dir.path());
        p.must(&[
            "import",
            "--change",
            "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin",
            &tar.display().to_string(),
            IMAGE,
        ]);
        p
    }

    /// The environment that points a `podman` at this engine's files.
    pub fn env(&self) -> [(&'static str, String); 2] {
        let d = self.dir.path().display();
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
        cmd.arg(format!("--net={}", self.host.ns.path())).arg("podman").args(args).envs(self.env());
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
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "3600"]);
        self.must(&args)
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

    /// The network namespace Podman made for the container (`/run/netns/…`).
    pub fn sandbox(&self, name: &str) -> String {
        self.must(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name])
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
        unmount_under(self.dir.path());
    }
}
