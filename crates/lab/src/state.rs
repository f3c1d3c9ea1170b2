//! What is up: one lab per machine, recorded in `/run/nearhost-lab/state.json`
//! (tmpfs, like the namespaces it describes). Writing the file under the lab's
//! lock is the claim, so two `demo`s cannot build over each other.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nearhost_kernel::process::Process;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::plan::Dp;

pub const LAB_DIR: &str = "/run/nearhost-lab";

fn state_path() -> PathBuf {
    PathBuf::from(LAB_DIR).join("state.json")
}

/// Held while the claim checks for a lab and writes the state.
fn lock() -> Result<nearhost_state::Lock> {
    Ok(nearhost_state::lock(&Path::new(LAB_DIR).join("lock"), Duration::from_secs(10))?)
}

/// One datapath as attached in the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabDatapath {
    pub datapath: Dp,
    /// Attached on both hosts; false with `reason` when it could not be.
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<IpAddr>,
    /// Where the client connects (host port for bridge+NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where the client reaches nginx (`http` workload; mapped for bridge+NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_target: Option<String>,
    pub client_ns: String,
    pub server_ns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The process that built the lab (`nearhost demo` or `nearhost lab up`).
    pub owner: Process,
    pub owner_command: String,
    pub started_unix: u64,
    /// Namespaces made (also for teardown of a half-built lab).
    pub namespaces: Vec<String>,
    pub datapaths: Vec<LabDatapath>,
    /// Bench servers and nginx processes started in the server namespaces.
    pub servers: Vec<Process>,
}

impl LabState {
    /// Claims the machine's lab for `owner`. Fails when a lab is up.
    pub fn claim(owner: &str) -> Result<LabState> {
        let _lock = lock()?;
        if let Some(up) = LabState::load()? {
            return Err(already_up(&up));
        }
        let state = LabState {
            owner: Process::current(),
            owner_command: owner.to_string(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            namespaces: Vec::new(),
            datapaths: Vec::new(),
            servers: Vec::new(),
        };
        state.save()?;
        Ok(state)
    }

    /// The lab that is up, if any.
    pub fn load() -> Result<Option<LabState>> {
        nearhost_state::read_json(&state_path()).map_err(|e| match e {
            nearhost_state::StateError::Corrupt { .. } => {
                LabError::Other(format!("{e}; run `nearhost lab down`"))
            }
            e => e.into(),
        })
    }

    /// Rewrites the state atomically.
    pub fn save(&self) -> Result<()> {
        Ok(nearhost_state::write_json(&state_path(), self)?)
    }

    /// The process that built the lab is another one and still running (the
    /// start time tells a reused PID apart).
    pub fn owner_alive(&self) -> bool {
        self.owner != Process::current() && self.owner.alive()
    }
}

/// Removes the state file and the lab directory (IPAM state of the lab hosts).
pub fn forget() -> Result<()> {
    match std::fs::remove_dir_all(LAB_DIR) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io(format!("remove {LAB_DIR}"), e)),
    }
}

fn already_up(s: &LabState) -> LabError {
    let detail = if s.owner_alive() {
        format!(
            "made by `nearhost {}` (pid {}), which is still running",
            s.owner_command, s.owner.pid
        )
    } else {
        format!("left by `nearhost {}` (pid {}, no longer running)", s.owner_command, s.owner.pid)
    };
    LabError::AlreadyUp(detail)
}
