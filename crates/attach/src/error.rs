//! Everything `nearhost attach` and its siblings can report. Each message names
//! the target, network, file or flag involved and says what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{flag} {value:?}: {reason}")]
    BadFlag { flag: &'static str, value: String, reason: String },

    #[error(
        "network {name:?} is not defined in {}{}; create it with `nearhost net create {name} --datapath … --subnet …` (or point --net-dir / NEARHOST_NET_DIR elsewhere)",
        dir.display(),
        known_list(known)
    )]
    NetworkNotFound { name: String, dir: PathBuf, known: Vec<String> },

    #[error("network definition {} is invalid: {reason}; fix the file, or recreate it with `nearhost net create … --force`", file.display())]
    NetworkInvalid { file: PathBuf, reason: String },

    #[error("network {name:?} would be invalid: {reason}; nothing was written")]
    InvalidSpec { name: String, reason: String },

    #[error("network {name:?} is defined more than once ({}); remove all but one", paths(files))]
    NetworkDuplicate { name: String, files: Vec<PathBuf> },

    #[error("network {name:?} already exists in {}; pass --force to replace it", file.display())]
    NetworkExists { name: String, file: PathBuf },

    #[error("cannot read the network definitions in {}: {source}", dir.display())]
    NetDir { dir: PathBuf, source: std::io::Error },

    #[error("{engine} is not reachable{}: {reason}", endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default())]
    EngineUnreachable { engine: &'static str, endpoint: Option<String>, reason: String },

    #[error("{engine} at {endpoint} answered the inspect of {target:?} with an error: {reason}")]
    EngineFailed { engine: &'static str, endpoint: String, target: String, reason: String },

    #[error("{target:?} is not a PID or a namespace path, and no container engine could be asked: {}", reasons.join("; "))]
    NoEngine { target: String, reasons: Vec<String> },

    #[error("no container {target:?} in {}; check the name with `docker ps` / `podman ps`", searched.join(" or "))]
    ContainerNotFound { target: String, searched: Vec<String> },

    #[error("container {target:?} ({engine}) is not running (status: {status}); start it first — its network namespace exists only while it runs")]
    NotRunning { target: String, engine: &'static str, status: String },

    #[error("no process with PID {pid}")]
    ProcessNotFound { pid: u32 },

    #[error("{path} is not a network namespace: {reason}")]
    NotNetns { path: String, reason: String },

    #[error("{target} shares this host's network namespace (e.g. docker --network host); nearhost attaches only to containers with a namespace of their own (docker run --network none, unshare --net)")]
    HostNamespace { target: String },

    #[error("{target} is already attached to network {network:?} (interface {ifname}); detach it first with `nearhost detach {target} --net {network}`")]
    AlreadyAttached { target: String, network: String, ifname: String },

    #[error("{target} is not attached to network {network:?}{}; `nearhost ls` lists the attachments", ifname.as_ref().map(|i| format!(" with interface {i}")).unwrap_or_default())]
    NotAttached { target: String, network: String, ifname: Option<String> },

    #[error("network {network:?}: plugin {plugin} {verb} failed (CNI error {code}): {msg}{hint}")]
    Plugin {
        network: String,
        plugin: String,
        verb: &'static str,
        code: u32,
        msg: String,
        hint: &'static str,
    },

    #[error("network {network:?}: plugin {plugin:?} (plugins[{index}]) is not in CNI_PATH ({path}); install it there, or set CNI_PATH / --cni-path")]
    PluginMissing { network: String, index: usize, plugin: String, path: String },

    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; also: "))]
    Many { errors: Vec<AttachError> },

    #[error("nearhost's attachment state {}: {source}", path.display())]
    State { path: PathBuf, source: std::io::Error },

    #[error("nearhost's attachment record {} is unreadable: {reason}; remove it if the attachment is gone", path.display())]
    StateCorrupt { path: PathBuf, reason: String },

    #[error("timed out after {seconds} s waiting for {}: another attach, detach or gc is running", path.display())]
    StateBusy { path: PathBuf, seconds: u64 },
}

impl From<nearhost_state::StateError> for AttachError {
    fn from(e: nearhost_state::StateError) -> Self {
        use nearhost_state::StateError as S;
        match e {
            S::Io { path, source, .. } => AttachError::State { path, source },
            S::Corrupt { path, reason } => AttachError::StateCorrupt { path, reason },
            S::LockTimeout { path, seconds } => AttachError::StateBusy { path, seconds },
        }
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (no networks are defined there)".to_string()
    } else {
        format!(" (defined: {})", known.join(", "))
    }
}

fn paths(files: &[PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl AttachError {
    /// A stable word for scripts (`--json` errors) and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            AttachError::BadFlag { .. } => "bad_flag",
            AttachError::NetworkNotFound { .. } => "network_not_found",
            AttachError::NetworkInvalid { .. } | AttachError::InvalidSpec { .. } => {
                "network_invalid"
            }
            AttachError::NetworkDuplicate { .. } => "network_duplicate",
            AttachError::NetworkExists { .. } => "network_exists",
            AttachError::NetDir { .. } => "net_dir",
            AttachError::EngineUnreachable { .. } | AttachError::NoEngine { .. } => {
                "engine_unreachable"
            }
            AttachError::EngineFailed { .. } => "engine_failed",
            AttachError::ContainerNotFound { .. } | AttachError::ProcessNotFound { .. } => {
                "target_not_found"
            }
            AttachError::NotRunning { .. } => "not_running",
            AttachError::NotNetns { .. } => "not_netns",
            AttachError::HostNamespace { .. } => "host_namespace",
            AttachError::AlreadyAttached { .. } => "already_attached",
            AttachError::NotAttached { .. } => "not_attached",
            AttachError::Plugin { .. } | AttachError::PluginMissing { .. } => "plugin",
            AttachError::State { .. }
            | AttachError::StateCorrupt { .. }
            | AttachError::StateBusy { .. } => "state",
            AttachError::Many { errors } => {
                errors.first().map(AttachError::kind).unwrap_or("plugin")
            }
        }
    }

    pub fn bad_flag(
        flag: &'static str, value: impl Into<String>, reason: impl Into<String>,
    ) -> Self {
        AttachError::BadFlag { flag, value: value.into(), reason: reason.into() }
    }

    pub fn state(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AttachError::State { path: path.into(), source }
    }
}

pub type Result<T, E = AttachError> = std::result::Result<T, E>;
