//! The embedded store: one JSON file per network under `dataDir/NETWORK/`,
//! guarded by a lock file so that many plugin processes can run at once, and
//! replaced atomically (nearhost-state: fsync, rename, fsync dir) so a crash never
//! leaves a torn file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nearhost_state::StateError;

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

    fn load(&self) -> Result<State> {
        Ok(nearhost_state::read_json(&self.dir.join(STATE_FILE))?.unwrap_or_default())
    }

    /// Replaces an unreadable state file with `rebuilt()`, under the lock (no
    /// plugin runs meanwhile); the unreadable file stays beside it as
    /// `state.json.corrupt-UNIXTIME`. Returns where it went, or `None` when the
    /// file reads fine (then nothing is touched).
    pub fn repair(&self, rebuilt: impl FnOnce() -> Result<State>) -> Result<Option<PathBuf>> {
        let _lock = nearhost_state::lock(&self.dir.join(LOCK_FILE), LOCK_TIMEOUT)?;
        match self.load() {
            Ok(_) => return Ok(None),
            Err(IpamError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        let state = rebuilt()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (file, aside) =
            (self.dir.join(STATE_FILE), self.dir.join(format!("{STATE_FILE}.corrupt-{now}")));
        std::fs::rename(&file, &aside)
            .map_err(|e| IpamError::io(format!("move {} aside", file.display()), e))?;
        nearhost_state::write_json(&file, &state)?;
        Ok(Some(aside))
    }
}

impl Store for FileStore {
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let _lock = nearhost_state::lock(&self.dir.join(LOCK_FILE), LOCK_TIMEOUT)?;
        let before = self.load()?;
        let mut state = before.clone();
        let out = f(&mut state)?;
        if state != before {
            nearhost_state::write_json(&self.dir.join(STATE_FILE), &state)?;
        }
        Ok(out)
    }
}

impl From<StateError> for IpamError {
    fn from(e: StateError) -> Self {
        let p = e.path().to_path_buf();
        let path = p.display().to_string();
        match e {
            StateError::LockTimeout { seconds, .. } => IpamError::LockTimeout { path, seconds },
            StateError::Corrupt { reason, .. } => {
                // dataDir/NETWORK/state.json: say how to rebuild it.
                let network = p.parent().and_then(Path::file_name);
                let data_dir = p.parent().and_then(Path::parent);
                let hint = match (network, data_dir) {
                    (Some(n), Some(d)) => format!(
                        "nearhost ipam repair {} --data-dir {}",
                        n.to_string_lossy(),
                        d.display()
                    ),
                    _ => "nearhost ipam repair".into(),
                };
                IpamError::Corrupt { path, reason, hint }
            }
            StateError::Io { what, source, .. } => IpamError::io(format!("{what} {path}"), source),
        }
    }
}

/// Network names become directory names: refuse anything that could escape.
fn network_dir_name(network: &str) -> Result<&str> {
    validate_network_name(network).map_err(|reason| IpamError::config("name", reason))?;
    Ok(network)
}

/// A network name as the CNI spec allows it (`^[a-zA-Z0-9_.\-]+$`, here at
/// most 128 bytes and neither `.` nor `..`): it becomes a directory name under
/// every state directory, so nothing else may pass. The error names the value.
pub fn validate_network_name(network: &str) -> std::result::Result<(), String> {
    let ok = !network.is_empty()
        && network.len() <= 128
        && network != "."
        && network != ".."
        && network.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{network:?} is not a valid network name (letters, digits, - _ .; at most 128)"
        ))
    }
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
                s.reservations
                    .insert(ip, Reservation { owner: Owner::new("c1", "eth0"), since: 1 });
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
