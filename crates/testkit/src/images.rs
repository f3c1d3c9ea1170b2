//! What the container-engine suites (Docker, Podman) share: a busybox image
//! built without a registry, and unmounting what an engine left under its
//! temporary root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Tags the engine suites give the imported image.
pub const IMAGE: &str = "nearhost-test/busybox:latest";

/// A root file system tarball from Debian's busybox-static: `/bin/busybox` plus
/// a link for every applet, written under `dir`; ready for `docker import` /
/// `podman import` with `PATH=/bin:/sbin:/usr/bin:/usr/sbin`.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "apt-get install busybox-static");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list-full").output().expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "bin/busybox")
    {
        let link = root.join(applet);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
    }
    tar_dir(&root, &dir.join("rootfs.tar"))
}

/// Packs the contents of `dir` into the tar file `tar`; returns its path.
pub fn tar_dir(dir: &Path, tar: &Path) -> PathBuf {
    let out =
        Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(tar).arg(".").output().expect("tar");
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    tar.to_path_buf()
}

/// Lazily unmounts whatever an engine left mounted in `dir` (overlays, shm,
/// netns bind mounts), deepest first, so that the directory can be removed.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: a valid C string; MNT_DETACH only detaches the mount.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A Debian root file system of `release` (`debootstrap --variant=minbase`)
/// with `packages`, built once per machine and kept beside the build
/// (`target/debian-RELEASE-root`; rebuilt when the package list changes).
/// Built into a temporary directory and renamed, under a lock, so concurrent
/// suites and an interrupted build never see half a root. Panics with
/// debootstrap's log when it cannot be built (no network to Debian's archive,
/// debootstrap missing): the suites that need it fail, never skip.
pub fn debian_root(release: &str, packages: &[&str]) -> PathBuf {
    let target = Path::new(crate::bin()).parent().and_then(Path::parent).expect("target dir");
    let root = target.join(format!("debian-{release}-root"));
    let stamp_text = packages.join(",");
    let stamp = target.join(format!("debian-{release}-root.packages"));
    let lock = std::fs::File::create(target.join(format!("debian-{release}-root.lock")))
        .expect("create the root's lock file");
    // SAFETY: flock on a file we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
    if root.is_dir() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&stamp_text) {
        return root;
    }
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap is not installed (scripts/setup.sh installs it)"
    );
    let building = target.join(format!("debian-{release}-root.building"));
    for old in [&building, &root] {
        if old.exists() {
            unmount_under(old);
            std::fs::remove_dir_all(old).expect("remove an old root");
        }
    }
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={stamp_text}"), release])
        .arg(&building)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    let log =
        std::fs::read_to_string(building.join("debootstrap/debootstrap.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "debootstrap {release} failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        last_lines(&log, 30)
    );
    std::fs::rename(&building, &root).expect("move the new root into place");
    std::fs::write(&stamp, &stamp_text).expect("write the root's stamp");
    root
}

/// The last `n` lines of `text` (a failed tool's log, for a panic message).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
