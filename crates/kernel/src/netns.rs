//! Network namespaces: an open handle, a guard that enters one on the current
//! thread and restores the previous one on drop, and named namespaces under
//! `/run/netns` (the iproute2 convention, so `ip netns exec` works on them).

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use crate::error::{KernelError, Result};

/// Where named namespaces live.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The calling thread's network namespace (not the process's: a thread may
/// have entered another one).
pub const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// An open network namespace (an nsfs file descriptor).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` after checking that it really is a namespace file (nsfs), as
    /// the CNI spec's `CNI_NETNS` must be.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file =
            File::open(path).map_err(|e| KernelError::io(format!("open {}", path.display()), e))?;
        let fs = statfs(path)
            .map_err(|e| KernelError::io(format!("statfs {}", path.display()), e.into()))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(KernelError::NotNetns(path.display().to_string()));
        }
        // An nsfs file can be any kind of namespace (mnt, pid, ...): setns with
        // CLONE_NEWNET would fail later; ask the kernel now instead.
        if ns_type(&file)? != libc::CLONE_NEWNET {
            return Err(KernelError::NotNetns(path.display().to_string()));
        }
        Ok(NetNs { file, path: path.to_path_buf() })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open(THREAD_NETNS)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's inode number: equal for two handles on the same namespace.
    pub fn inode(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata().map_err(|e| KernelError::io("stat netns", e))?.ino())
    }

    pub fn try_clone(&self) -> Result<Self> {
        Ok(NetNs {
            file: self.file.try_clone().map_err(|e| KernelError::io("dup netns fd", e))?,
            path: self.path.clone(),
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// `NS_GET_NSTYPE` ioctl: which kind of namespace an nsfs fd refers to.
fn ns_type(file: &File) -> Result<i32> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                 // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r < 0 {
        return Err(KernelError::io("NS_GET_NSTYPE", std::io::Error::last_os_error()));
    }
    Ok(r)
}

/// Enters a namespace on the current thread and returns to the previous one on
/// drop. It is `!Send`: a guard moved to another thread would restore the wrong
/// thread's namespace.
pub struct Guard {
    previous: File,
    _not_send: PhantomData<*const ()>,
}

impl Guard {
    pub fn enter(ns: &NetNs) -> Result<Self> {
        let previous = File::open(THREAD_NETNS)
            .map_err(|e| KernelError::io("open /proc/thread-self/ns/net", e))?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io(format!("setns into {}", ns.path.display()), e.into()))?;
        Ok(Guard { previous, _not_send: PhantomData })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = setns(self.previous.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A second panic while unwinding would abort the whole process; the
            // unwinding thread runs no more of its own code anyway.
            if std::thread::panicking() {
                tracing::error!(
                    "cannot return to the previous network namespace while unwinding: {e}"
                );
                return;
            }
            // Continuing on this thread would run later code in the wrong namespace.
            panic!("cannot return to the previous network namespace: {e}");
        }
    }
}

/// Runs `f` on a fresh thread inside `ns`. The caller's thread never changes
/// namespace, so this is safe to call from any thread (including async workers).
pub fn run_in<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> Result<T> {
    // Already there (the host namespace the agent and the plugin run in): no
    // setns, which needs CAP_SYS_ADMIN even into one's own namespace, so the
    // agent keeps working with CAP_NET_ADMIN alone.
    if is_current(ns)? {
        return Ok(f());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = Guard::enter(ns)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Whether `ns` is the calling thread's network namespace.
fn is_current(ns: &NetNs) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata(THREAD_NETNS)
        .map_err(|e| KernelError::io("stat /proc/thread-self/ns/net", e))?;
    let there = ns.file.metadata().map_err(|e| KernelError::io("stat netns", e))?;
    Ok(here.dev() == there.dev() && here.ino() == there.ino())
}

/// The path of a named namespace.
pub fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Creates a new, empty network namespace and pins it at `/run/netns/NAME`.
pub fn create_named(name: &str) -> Result<NetNs> {
    validate_name(name)?;
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir)
        .map_err(|e| KernelError::io(format!("create {}", dir.display()), e))?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| KernelError::io(format!("create {}", path.display()), e))?;
    let pinned = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            // unshare affects only this short-lived thread; the bind mount keeps
            // the namespace alive after the thread exits.
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| KernelError::io("unshare(CLONE_NEWNET)", e.into()))?;
            nix::mount::mount(
                Some(THREAD_NETNS),
                &path,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                KernelError::io(format!("bind-mount netns on {}", path.display()), e.into())
            })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    NetNs::open(&path)
}

/// Runs `f` on a thread of its own in a new, empty network namespace that
/// nothing else can reach and that vanishes with the thread (and everything
/// created in it): for probing what the kernel supports without touching the
/// caller's namespace or leaving anything behind, even on a crash.
pub fn run_in_scratch<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| KernelError::io("unshare(CLONE_NEWNET)", e.into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Removes a named namespace. Missing is success (idempotent).
pub fn delete_named(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = named_path(name);
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(KernelError::io(format!("unmount {}", path.display()), e.into())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KernelError::io(format!("remove {}", path.display()), e)),
    }
}

/// Names of the namespaces under `/run/netns`.
pub fn list_named() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KernelError::io(format!("read {NETNS_RUN_DIR}"), e)),
    };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    Ok(names)
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(KernelError::Unsupported(format!("invalid namespace name {name:?}")));
    }
    Ok(())
}
