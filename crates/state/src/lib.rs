//! nearhost's one mechanism for local state: every file the plugin, `attach`,
//! the SR-IOV/hostdev claims and the lab keep goes through here, so they all
//! have the same crash guarantee.
//!
//! - [`lock`]: an exclusive `flock` on a lock file beside the state, with a
//!   timeout (a stuck holder becomes an error that names the file, not a hang).
//! - [`write_atomic`]: temp file in the same directory, fsync, rename over the
//!   target, fsync the directory — after a crash the file is the old one or the
//!   new one, never torn, and the rename itself survives a power cut.
//! - [`create_dir`]: directories are made (and tightened) to the given mode;
//!   state is 0700/0600 ([`PRIVATE_DIR`], [`PRIVATE_FILE`]).
//!
//! Kernel-free: files only, no netlink, no namespaces.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Mode of a directory holding state (root only).
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of a state or lock file (root only).
pub const PRIVATE_FILE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {seconds} s waiting for the lock {}; another nearhost process holds it", path.display())]
    LockTimeout { path: PathBuf, seconds: u64 },
    #[error("{} is unreadable: {reason} (fix it or move it aside)", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl StateError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
        let path = path.to_path_buf();
        move |source| StateError::Io { what, path, source }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StateError::Io { path, .. }
            | StateError::LockTimeout { path, .. }
            | StateError::Corrupt { path, .. } => path,
        }
    }
}

pub type Result<T> = std::result::Result<T, StateError>;

/// Creates `dir` (and parents) with `mode` for the directories it creates, and
/// tightens `dir` itself to `mode` if it already existed more open.
pub fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    let io = StateError::io("create", dir);
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(io)?;
    let perms = std::fs::metadata(dir).map_err(StateError::io("inspect", dir))?.permissions();
    if perms.mode() & 0o777 & !mode != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(StateError::io("tighten", dir))?;
    }
    Ok(())
}

/// An exclusive lock on a lock file, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
}

/// Takes an exclusive `flock` on `path` (created 0600, its directory 0700),
/// waiting at most `timeout` for another holder to let go.
pub fn lock(path: &Path, timeout: Duration) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        create_dir(dir, PRIVATE_DIR)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE_FILE)
        .open(path)
        .map_err(StateError::io("open", path))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(Lock { _flock: flock }),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                if Instant::now() >= deadline {
                    return Err(StateError::LockTimeout {
                        path: path.to_path_buf(),
                        seconds: timeout.as_secs(),
                    });
                }
                file = f;
                // Poll with growing pauses: the transactions behind these locks
                // take well under a millisecond, and a blocking flock's FIFO
                // wake-up chain is slower than polling in a burst of plugin
                // processes. The PID spreads waiters so they don't retry in step.
                let jitter = Duration::from_micros(u64::from(std::process::id() % 97) * 3);
                std::thread::sleep(pause + jitter);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err((_, e)) => {
                return Err(StateError::Io {
                    what: "lock",
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
}

/// The directory of `path` and the prefix and suffix of [`write_atomic`]'s
/// temp files for it: `.NAME.PID.tmp` (the PID keeps two processes writing
/// the same file from sharing a temp file).
fn temp_parts(path: &Path) -> (&Path, String, &'static str) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, format!(".{name}."), ".tmp")
}

/// Replaces `path` with `bytes` atomically; the file gets `mode`. The directory
/// must exist ([`create_dir`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (dir, prefix, suffix) = temp_parts(path);
    let tmp = dir.join(format!("{prefix}{}{suffix}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f =
            OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StateError::Io { what: "write", path: path.to_path_buf(), source: e }
    })
}

/// Removes the temp files [`write_atomic`] left beside `path` when a process
/// writing it died before its rename.
pub fn remove_stale_temps(path: &Path) -> Result<()> {
    let (dir, prefix, suffix) = temp_parts(path);
    let io =
        |e| StateError::Io { what: "remove stale temp files", path: path.to_path_buf(), source: e };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(suffix) {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes `value` as pretty JSON (with a final newline), atomically, 0600.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot encode: {e}"),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, PRIVATE_FILE)
}

/// Reads JSON state; a missing file is `None`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt { path: path.to_path_buf(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io { what: "read", path: path.to_path_buf(), source: e }),
    }
}

/// Removes `path`; a missing file is success.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StateError::Io { what: "remove", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_replaces_sets_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir(&sub, PRIVATE_DIR).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("x.json");
        write_atomic(&f, b"one", PRIVATE_FILE).unwrap();
        write_atomic(&f, b"two", PRIVATE_FILE).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(mode(&f), 0o600);
        let names: Vec<_> =
            std::fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
        remove(&f).unwrap();
        remove(&f).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.json");
        write_atomic(&f, b"old", PRIVATE_FILE).unwrap();
        // A directory where the temp file would go makes the write fail.
        let tmp = dir.path().join(format!(".x.json.{}.tmp", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        let e = write_atomic(&f, b"new", PRIVATE_FILE).unwrap_err();
        assert!(e.to_string().contains("x.json"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"old");
    }

    #[test]
    fn an_open_directory_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&d, PRIVATE_DIR).unwrap();
        assert_eq!(mode(&d), 0o700);
    }

    #[test]
    fn json_round_trips_and_corrupt_json_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        assert_eq!(read_json::<Vec<u32>>(&f).unwrap(), None);
        write_json(&f, &vec![1u32, 2]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&f).unwrap(), Some(vec![1, 2]));
        assert_eq!(mode(&f), 0o600);
        std::fs::write(&f, "{nope").unwrap();
        let e = read_json::<Vec<u32>>(&f).unwrap_err();
        assert!(
            matches!(e, StateError::Corrupt { .. })
                && e.to_string().contains("s.json is unreadable"),
            "{e}"
        );
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.lock");
        let held = lock(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        match lock(&path, Duration::from_millis(50)) {
            Err(StateError::LockTimeout { path: p, .. }) => assert_eq!(p, path),
            other => panic!("a second holder got the lock: {other:?}"),
        }
        drop(held);
        lock(&path, Duration::from_millis(50)).unwrap();
    }
}
