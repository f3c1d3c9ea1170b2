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
