//! What is up: one lab per machine, recorded in `/run/nearhost-lab/state.json`
//! (tmpfs, like the namespaces it describes). Creating the file is the claim,
//! so two `demo`s cannot build over each other.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::plan::Dp;

pub const LAB_DIR: &str = "/run/nearhost-lab";

fn state_path() -> PathBuf {
    PathBuf::from(LAB_DIR).join("state.json")
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
    pub client_ns: String,
    pub server_ns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The process that built the lab (`nearhost demo` or `nearhost lab up`).
    pub owner_pid: u32,
    pub owner: String,
    pub started_unix: u64,
    /// Namespaces made (also for teardown of a half-built lab).
    pub namespaces: Vec<String>,
    pub datapaths: Vec<LabDatapath>,
    /// Bench servers started in the server namespaces.
    pub server_pids: Vec<u32>,
}

impl LabState {
    /// Claims the machine's lab for `owner`. Fails when a lab is up.
    pub fn claim(owner: &str) -> Result<LabState> {
        std::fs::create_dir_all(LAB_DIR).map_err(|e| LabError::io(format!("create {LAB_DIR}"), e))?;
        let state = LabState {
            owner_pid: std::process::id(),
            owner: owner.to_string(),
            started_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            namespaces: Vec::new(),
            datapaths: Vec::new(),
            server_pids: Vec::new(),
        };
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(state_path());
        match file {
            Ok(mut f) => {
                f.write_all(serde_json::to_string_pretty(&state).expect("serializes").as_bytes())
                    .map_err(|e| LabError::io("write lab state", e))?;
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(already_up()),
            Err(e) => Err(LabError::io(format!("create {}", state_path().display()), e)),
        }
    }

    /// The lab that is up, if any.
    pub fn load() -> Result<Option<LabState>> {
        match std::fs::read_to_string(state_path()) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| LabError::Other(format!("lab state {} is unreadable ({e}); run `nearhost lab down`", state_path().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io(format!("read {}", state_path().display()), e)),
        }
    }

    /// Rewrites the state atomically.
    pub fn save(&self) -> Result<()> {
        let tmp = state_path().with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("serializes")).map_err(|e| LabError::io("write lab state", e))?;
        std::fs::rename(&tmp, state_path()).map_err(|e| LabError::io("replace lab state", e))
    }

    pub fn owner_alive(&self) -> bool {
        self.owner_pid != std::process::id() && std::path::Path::new(&format!("/proc/{}", self.owner_pid)).exists()
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

fn already_up() -> LabError {
    let detail = match LabState::load() {
        Ok(Some(s)) if s.owner_alive() => format!("made by `nearhost {}` (pid {}), which is still running", s.owner, s.owner_pid),
        Ok(Some(s)) => format!("left by `nearhost {}` (pid {}, no longer running)", s.owner, s.owner_pid),
        _ => "its state is being written".to_string(),
    };
    LabError::AlreadyUp(detail)
}
