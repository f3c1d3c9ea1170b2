//! Claims on devices a container gets exclusively (SR-IOV VFs, whole NICs):
//! one JSON file per kind in the driver's state directory, read and changed only
//! under an exclusive `flock`, so concurrent ADDs — separate plugin processes —
//! never take the same device. Each claim records what DEL must restore.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{DatapathError, Result};

/// The claims of one kind (`sriov-vfs`, `hostdev`) in one state directory.
#[derive(Debug, Clone)]
pub struct ClaimStore {
    dir: PathBuf,
    kind: &'static str,
}

/// The claims, read under the lock; changes are written by [`Locked::commit`].
/// The lock is held until this is dropped.
pub struct Locked<T> {
    path: PathBuf,
    claims: BTreeMap<String, T>,
    _lock: Flock<File>,
}

impl ClaimStore {
    pub fn new(state_dir: &Path, kind: &'static str) -> Self {
        ClaimStore { dir: state_dir.to_path_buf(), kind }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.kind))
    }

    /// Takes the exclusive lock (waiting for other plugin processes) and reads the claims.
    pub fn lock<T: DeserializeOwned>(&self) -> Result<Locked<T>> {
        let io = |what: String| move |e: std::io::Error| DatapathError::State { what, source: e };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(format!("create {}", self.dir.display())))?;
        let lock_path = self.dir.join(format!("{}.lock", self.kind));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(format!("open {}", lock_path.display())))?;
        // A blocking lock: claim transactions are a file read and write, and a
        // waiter must not give up while a burst of ADDs queues behind it.
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| DatapathError::State { what: format!("lock {}", lock_path.display()), source: e.into() })?;
        let path = self.path();
        let claims = read_claims(&path)?;
        Ok(Locked { path, claims, _lock: lock })
    }
}

fn read_claims<T: DeserializeOwned>(path: &Path) -> Result<BTreeMap<String, T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DatapathError::State {
            what: format!("{} is not a valid claims file (fix or remove it)", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(DatapathError::State { what: format!("read {}", path.display()), source: e }),
    }
}

impl<T: Serialize> Locked<T> {
    pub fn claims(&self) -> &BTreeMap<String, T> {
        &self.claims
    }

    pub fn insert(&mut self, key: impl Into<String>, claim: T) {
        self.claims.insert(key.into(), claim);
    }

    pub fn remove(&mut self, key: &str) -> Option<T> {
        self.claims.remove(key)
    }

    /// Writes the claims (atomically: a crash leaves the old file or the new one).
    pub fn commit(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.claims).expect("claims serialize");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| DatapathError::State { what: format!("write {}", self.path.display()), source: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_persist_and_uncommitted_changes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClaimStore::new(dir.path(), "things");
        let mut l = store.lock::<u32>().unwrap();
        l.insert("a", 1);
        l.commit().unwrap();
        l.insert("b", 2);
        drop(l);
        let l = store.lock::<u32>().unwrap();
        assert_eq!(l.claims().keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn the_lock_excludes_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClaimStore::new(dir.path(), "things");
        let held = store.lock::<u32>().unwrap();
        let path = dir.path().join("things.lock");
        let other = File::options().write(true).open(path).unwrap();
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err(), "a second holder got the lock");
        drop(held);
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("things.json"), "{nope").unwrap();
        let e = ClaimStore::new(dir.path(), "things").lock::<u32>().err().unwrap().to_string();
        assert!(e.contains("things.json") && e.contains("not a valid claims file"), "{e}");
    }
}
