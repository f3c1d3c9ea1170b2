//! The embedded store: one JSON file per network under `dataDir/NETWORK/`,
//! guarded by `flock` so that many plugin processes can run at once, and replaced
//! atomically (write, fsync, rename, fsync dir) so a crash never leaves a torn file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{IpamError, Result};
use crate::store::{State, Store};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// How long a plugin waits for the lock before answering "try again later".
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(20);

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store of network `network` under `data_dir`. Nothing is created until
    /// the first update.
    pub fn new(data_dir: &Path, network: &str) -> Result<Self> {
        Ok(FileStore { dir: data_dir.join(network_dir_name(network)?) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Flock<File>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| IpamError::io(format!("create {}", self.dir.display()), e))?;
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IpamError::io(format!("open {}", path.display()), e))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut pause = Duration::from_micros(200);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) | Err((f, nix::errno::Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(IpamError::LockTimeout { path: path.display().to_string(), seconds: LOCK_TIMEOUT.as_secs() });
                    }
                    file = f;
                    // Spin briefly with growing pauses: plugin transactions take
                    // well under a millisecond, so a blocking flock's FIFO wake-up
                    // chain would be slower than polling.
                    std::thread::sleep(pause + Duration::from_micros(fastrand_jitter()));
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err((_, e)) => return Err(IpamError::io(format!("lock {}", path.display()), e.into())),
            }
        }
    }

    fn load(&self) -> Result<State> {
        let path = self.dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| IpamError::Corrupt { path: path.display().to_string(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(IpamError::io(format!("read {}", path.display()), e)),
        }
    }

    fn save(&self, state: &State) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| IpamError::io(format!("write {}", path.display()), e))
    }
}

impl Store for FileStore {
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let before = self.load()?;
        let mut state = before.clone();
        let out = f(&mut state)?;
        if state != before {
            self.save(&state)?;
        }
        Ok(out)
    }
}

/// Network names become directory names: refuse anything that could escape.
fn network_dir_name(network: &str) -> Result<&str> {
    let ok = !network.is_empty()
        && network.len() <= 128
        && network != "."
        && network != ".."
        && network.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(IpamError::config("name", format!("{network:?} is not a valid network name (letters, digits, - _ .; at most 128)")));
    }
    Ok(network)
}

fn fastrand_jitter() -> u64 {
    // Spread waiters so they don't retry in lock-step; no RNG crate needed.
    u64::from(std::process::id() % 97) * 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Owner, Reservation};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn update_persists_and_failed_update_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path(), "net1").unwrap();
        let ip = "198.18.0.5".parse().unwrap();
        store
            .update(|s| {
                s.reservations.insert(ip, Reservation { owner: Owner::new("c1", "eth0"), since: 1 });
                Ok(())
            })
            .unwrap();
        let r: Result<()> = store.update(|s| {
            s.reservations.clear();
            Err(IpamError::Unavailable("boom".into()))
        });
        assert!(r.is_err());
        let again = FileStore::new(dir.path(), "net1").unwrap().read().unwrap();
        assert_eq!(again.reservations.len(), 1);
        let mode = std::fs::metadata(store.dir().join(STATE_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file must not be readable by others");
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path(), "net1").unwrap();
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(store.dir().join(STATE_FILE), b"{not json").unwrap();
        match store.read() {
            Err(IpamError::Corrupt { path, .. }) => assert!(path.ends_with("net1/state.json")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_network_names_are_refused() {
        for bad in ["", "..", "a/b", "x y"] {
            assert!(FileStore::new(Path::new("/tmp"), bad).is_err(), "{bad:?}");
        }
    }
}
