//! Claims on devices a container gets exclusively (SR-IOV VFs, whole NICs):
//! one JSON file per kind in one node-wide directory — a device is claimed once
//! per node, whichever network asks — read and changed only under an exclusive
//! lock, so concurrent ADDs — separate plugin processes — never take the same
//! device. Each claim records what DEL must restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;

/// How long an ADD waits behind other plugin processes for the claims. Claim
/// transactions are a file read and write; a burst of ADDs queues well inside it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The node-wide directory of device claims.
pub const NODE_DIR: &str = "/var/lib/nearhost/claims";

/// The environment variable that replaces [`NODE_DIR`] (as NEARHOST_SYSFS_ROOT
/// replaces /sys: for tests).
pub const NODE_DIR_ENV: &str = "NEARHOST_CLAIMS_DIR";

/// [`NODE_DIR`], unless [`NODE_DIR_ENV`] names another directory.
pub fn node_dir() -> PathBuf {
    match std::env::var_os(NODE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(NODE_DIR),
    }
}

/// The claims of one kind (`sriov-vfs`, `hostdev`) in one directory.
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
    _lock: nearhost_state::Lock,
}

impl ClaimStore {
    pub fn new(dir: &Path, kind: &'static str) -> Self {
        ClaimStore { dir: dir.to_path_buf(), kind }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.kind))
    }

    /// Whether any claim of this kind was ever recorded (its file exists).
    pub fn exists(&self) -> bool {
        self.file().exists()
    }

    /// The claims as last committed, without waiting for the lock: the file is
    /// replaced whole (rename), so this sees one complete version. For reports
    /// that must never block, such as the agent's VF inventory on its event loop.
    pub fn snapshot<T: DeserializeOwned>(&self) -> Result<BTreeMap<String, T>> {
        Ok(nearhost_state::read_json(&self.file())?.unwrap_or_default())
    }

    /// Takes the exclusive lock (waiting for other plugin processes) and reads the claims.
    pub fn lock<T: DeserializeOwned>(&self) -> Result<Locked<T>> {
        let lock =
            nearhost_state::lock(&self.dir.join(format!("{}.lock", self.kind)), LOCK_TIMEOUT)?;
        let claims = self.snapshot()?;
        Ok(Locked { path: self.file(), claims, _lock: lock })
    }
}

impl<T: Serialize> Locked<T> {
    pub fn claims(&self) -> &BTreeMap<String, T> {
        &self.claims
    }

    pub fn insert(&mut self, key: impl Into<String>, claim: T) {
        self.claims.insert(key.into(), claim);
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.claims.get_mut(key)
    }

    pub fn remove(&mut self, key: &str) -> Option<T> {
        self.claims.remove(key)
    }

    /// Writes the claims (atomically: a crash leaves the old file or the new one).
    pub fn commit(&self) -> Result<()> {
        Ok(nearhost_state::write_json(&self.path, &self.claims)?)
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
        let second =
            nearhost_state::lock(&dir.path().join("things.lock"), Duration::from_millis(20));
        assert!(second.is_err(), "a second holder got the lock");
        drop(held);
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("things.json"), "{nope").unwrap();
        let e = ClaimStore::new(dir.path(), "things").lock::<u32>().err().unwrap().to_string();
        assert!(e.contains("things.json") && e.contains("unreadable"), "{e}");
    }
}
