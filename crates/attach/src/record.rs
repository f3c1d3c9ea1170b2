//! nearhost's own record of each attachment, under the state directory
//! (`/var/lib/nearhost/attachments/`): the target, the network config and CNI
//! arguments the ADD ran with, and its result — what libcni keeps in its
//! cache, so that DEL runs with the same config even after the definition file
//! changed. One file per attachment, written atomically, readable by root only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nearhost_state::{Lock, PRIVATE_DIR};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AttachError, Result};
use crate::target::Target;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/nearhost";
pub const STATE_DIR_ENV: &str = "NEARHOST_STATE_DIR";
const RECORD_VERSION: u32 = 1;
/// An attach holds the lock through the whole plugin chain (a few seconds at
/// worst); a waiter gives up, naming the lock file, well after that.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub version: u32,
    pub network: String,
    /// The definition file it came from (informational: `config` is what runs).
    pub file: PathBuf,
    pub target: Target,
    pub ifname: String,
    pub datapath: String,
    /// `CNI_ARGS` of the ADD (static IP/MAC), passed to DEL unchanged.
    pub cni_args: String,
    /// The network's `cniVersion` and plugin configs as they were at ADD.
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// The chain's result; `None` while the ADD runs. A record left without a
    /// result is an interrupted attach, which `gc` undoes.
    pub result: Option<Value>,
    /// Unix seconds.
    pub created: u64,
}

impl Attachment {
    /// The addresses of the result (`198.18.0.5/24`).
    pub fn addresses(&self) -> Vec<String> {
        let ips = self.result.as_ref().and_then(|r| r.get("ips")).and_then(Value::as_array);
        ips.into_iter()
            .flatten()
            .filter_map(|ip| ip.get("address")?.as_str().map(str::to_string))
            .collect()
    }

    fn file_name(&self) -> String {
        // '@' occurs in neither network names nor container IDs, so the name
        // splits back unambiguously.
        format!("{}@{}@{}.json", self.network, self.target.container_id, self.ifname)
    }
}

/// The records directory.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Records of the state directory `state_dir` (they live in `attachments/`).
    pub fn new(state_dir: &Path) -> Self {
        Records { dir: state_dir.join("attachments") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> Result<()> {
        Ok(nearhost_state::create_dir(&self.dir, PRIVATE_DIR)?)
    }

    /// Serialises attach, detach and gc: the "already attached" check and the
    /// ADD must not interleave with another attach of the same container.
    pub fn lock(&self) -> Result<Lock> {
        self.ensure_dir()?;
        Ok(nearhost_state::lock(&self.dir.join(".lock"), LOCK_TIMEOUT)?)
    }

    pub fn save(&self, a: &Attachment) -> Result<()> {
        self.ensure_dir()?;
        Ok(nearhost_state::write_json(&self.dir.join(a.file_name()), a)?)
    }

    pub fn remove(&self, a: &Attachment) -> Result<()> {
        Ok(nearhost_state::remove(&self.dir.join(a.file_name()))?)
    }

    /// Every record, sorted by file name; unreadable ones are returned as errors
    /// beside the good ones so that one bad file does not hide the rest.
    pub fn list(&self) -> Result<(Vec<Attachment>, Vec<AttachError>)> {
        let read = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(AttachError::state(&self.dir, e)),
        };
        let mut paths: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for path in paths {
            match load(&path) {
                Ok(a) => good.push(a),
                Err(e) => bad.push(e),
            }
        }
        Ok((good, bad))
    }

    /// The records of `network` for CNI container ID `container_id`.
    pub fn find(&self, network: &str, container_id: &str) -> Result<Vec<Attachment>> {
        let (all, _) = self.list()?;
        Ok(all
            .into_iter()
            .filter(|a| a.network == network && a.target.container_id == container_id)
            .collect())
    }
}

fn load(path: &Path) -> Result<Attachment> {
    let bytes = std::fs::read(path).map_err(|e| AttachError::state(path, e))?;
    let a: Attachment = serde_json::from_slice(&bytes).map_err(|e| AttachError::StateCorrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if a.version != RECORD_VERSION {
        return Err(AttachError::StateCorrupt {
            path: path.to_path_buf(),
            reason: format!("record version {} is not {RECORD_VERSION}", a.version),
        });
    }
    Ok(a)
}

/// A new record (no result yet).
pub fn new_record(
    network: &crate::netdef::Network, target: Target, ifname: &str, cni_args: String,
) -> Attachment {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Attachment {
        version: RECORD_VERSION,
        network: network.name.clone(),
        file: network.file.clone(),
        target,
        ifname: ifname.to_string(),
        datapath: network.datapath(),
        cni_args,
        cni_version: network.cni_version.clone(),
        plugins: network.plugins.clone(),
        result: None,
        created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetKind;
    use std::os::unix::fs::PermissionsExt;

    fn record(id: &str, ifname: &str) -> Attachment {
        let net = crate::netdef::Network::from_json(
            Path::new("/n.conflist"),
            &serde_json::json!({"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "nearhost", "datapath": "macvlan"}]}),
        )
        .unwrap();
        let target = Target {
            kind: TargetKind::Pid,
            name: "pid 5".into(),
            container_id: id.into(),
            engine: None,
            pid: Some(5),
            pid_start: Some(9),
            netns: "/proc/5/ns/net".into(),
            netns_inode: 7,
        };
        new_record(&net, target, ifname, String::new())
    }

    #[test]
    fn save_list_find_remove() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path());
        let mut a = record("pid-5-9", "eth1");
        a.result = Some(serde_json::json!({"ips": [{"address": "198.18.0.5/24"}]}));
        r.save(&a).unwrap();
        r.save(&record("pid-6-9", "eth1")).unwrap();
        let _lock = r.lock().unwrap();
        let (all, bad) = r.list().unwrap();
        assert_eq!((all.len(), bad.len()), (2, 0));
        assert_eq!(r.find("n", "pid-5-9").unwrap(), vec![a.clone()]);
        assert_eq!(a.addresses(), vec!["198.18.0.5/24"]);
        assert_eq!(all[0].datapath, "macvlan");
        let mode = std::fs::metadata(r.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "records are not world-readable");
        r.remove(&a).unwrap();
        assert!(r.find("n", "pid-5-9").unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_record_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path());
        r.save(&record("pid-5-9", "eth1")).unwrap();
        std::fs::write(r.dir().join("n@x@eth1.json"), "{").unwrap();
        let (all, bad) = r.list().unwrap();
        assert_eq!(all.len(), 1);
        assert!(bad[0].to_string().contains("n@x@eth1.json is unreadable"), "{}", bad[0]);
    }
}
