//! Asking a container engine about a container: Docker through its Engine API
//! on a Unix socket (`DOCKER_HOST=unix://…`), Podman through `podman inspect`
//! or its Docker-compatible API socket (`CONTAINER_HOST=unix://…`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{self, HttpError};

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn label(self) -> &'static str {
        match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        }
    }
}

/// How an engine is reached; recorded with each attachment so that `ls` asks
/// the same engine later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "via")]
pub enum Endpoint {
    /// The engine's HTTP API on a Unix socket.
    Api { socket: PathBuf },
    /// The engine's command line (`podman`).
    Cli { program: PathBuf },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Api { socket } => write!(f, "unix://{}", socket.display()),
            Endpoint::Cli { program } => write!(f, "{}", program.display()),
        }
    }
}

/// An engine and how to reach it, or why it cannot be reached.
#[derive(Debug, Clone)]
pub struct Engine {
    pub kind: EngineKind,
    pub endpoint: Result<Endpoint, String>,
}

/// What nearhost needs to know about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub status: String,
    pub pid: u32,
}

#[derive(Debug)]
pub enum InspectError {
    /// The engine is not there (socket missing, refused, not installed).
    Unreachable(String),
    /// The engine answered, but with an error.
    Failed(String),
}

impl Engine {
    /// Docker as `DOCKER_HOST` says (default: its standard socket).
    pub fn docker(docker_host: Option<&str>) -> Engine {
        let endpoint = match docker_host.filter(|h| !h.is_empty()) {
            None => Ok(Endpoint::Api { socket: DOCKER_SOCKET.into() }),
            Some(h) => unix_socket("DOCKER_HOST", h),
        };
        Engine { kind: EngineKind::Docker, endpoint }
    }

    /// Podman as `CONTAINER_HOST` says, else its CLI on `path`, else its socket.
    pub fn podman(container_host: Option<&str>, path: Option<&str>) -> Engine {
        let endpoint = match container_host.filter(|h| !h.is_empty()) {
            Some(h) => unix_socket("CONTAINER_HOST", h),
            None => match find_program("podman", path) {
                Some(program) => Ok(Endpoint::Cli { program }),
                None if Path::new(PODMAN_SOCKET).exists() => {
                    Ok(Endpoint::Api { socket: PODMAN_SOCKET.into() })
                }
                None => Err(format!("not installed (no podman on PATH and no {PODMAN_SOCKET})")),
            },
        };
        Engine { kind: EngineKind::Podman, endpoint }
    }
}

fn unix_socket(var: &str, value: &str) -> Result<Endpoint, String> {
    match value.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(Endpoint::Api { socket: p.into() }),
        _ => Err(format!("{var}={value} is not a unix:// socket; nearhost asks the local engine over its Unix socket")),
    }
}

fn find_program(name: &str, path: Option<&str>) -> Option<PathBuf> {
    std::env::split_paths(path?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Looks `name` (a name or ID) up; `Ok(None)` when the engine has no such container.
pub fn inspect(
    kind: EngineKind, endpoint: &Endpoint, name: &str,
) -> Result<Option<ContainerInfo>, InspectError> {
    let found = match endpoint {
        Endpoint::Api { socket } => inspect_api(kind, socket, name)?,
        Endpoint::Cli { program } => inspect_cli(program, name)?,
    };
    found.map(|v| parse_inspect(&v).map_err(InspectError::Failed)).transpose()
}

fn inspect_api(kind: EngineKind, socket: &Path, name: &str) -> Result<Option<Value>, InspectError> {
    let path = format!("/containers/{}/json", http::path_segment(name));
    let resp = http::get(socket, &path).map_err(|e| match e {
        HttpError::Connect(io) => {
            let hint = match kind {
                EngineKind::Docker => "is dockerd running? DOCKER_HOST selects another socket",
                EngineKind::Podman => {
                    "is podman.socket running? CONTAINER_HOST selects another socket"
                }
            };
            InspectError::Unreachable(format!("connect: {io}; {hint}"))
        }
        other => InspectError::Failed(other.to_string()),
    })?;
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    match resp.status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        s => {
            let msg = body.get("message").and_then(Value::as_str).map(str::to_string);
            Err(InspectError::Failed(format!(
                "HTTP {s}: {}",
                msg.unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned())
            )))
        }
    }
}

fn inspect_cli(program: &Path, name: &str) -> Result<Option<Value>, InspectError> {
    let out = Command::new(program)
        .args(["container", "inspect", "--format", "json", "--", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| InspectError::Unreachable(format!("cannot run {}: {e}", program.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.to_ascii_lowercase().contains("no such container") {
            return Ok(None);
        }
        return Err(InspectError::Failed(format!(
            "{} container inspect: {err}",
            program.display()
        )));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| InspectError::Failed(format!("podman printed invalid JSON: {e}")))?;
    Ok(Some(v))
}

/// Reads an inspect answer: Docker's API gives an object, `podman inspect` a
/// list of one.
pub fn parse_inspect(v: &Value) -> Result<ContainerInfo, String> {
    let v = match v {
        Value::Array(items) => items.first().ok_or("the engine returned an empty list")?,
        other => other,
    };
    let id = v
        .get("Id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the answer has no \"Id\"")?;
    let state = v.get("State").ok_or("the answer has no \"State\"")?;
    let running = state.get("Running").and_then(Value::as_bool).unwrap_or(false);
    let status = state.get("Status").and_then(Value::as_str).unwrap_or(if running {
        "running"
    } else {
        "unknown"
    });
    let pid =
        state.get("Pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
    let name = v.get("Name").and_then(Value::as_str).unwrap_or(id).trim_start_matches('/');
    Ok(ContainerInfo {
        id: id.to_string(),
        name: name.to_string(),
        running,
        status: status.to_string(),
        pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_host_and_container_host() {
        assert_eq!(
            Engine::docker(None).endpoint,
            Ok(Endpoint::Api { socket: DOCKER_SOCKET.into() })
        );
        assert_eq!(
            Engine::docker(Some("unix:///tmp/d.sock")).endpoint,
            Ok(Endpoint::Api { socket: "/tmp/d.sock".into() })
        );
        let e = Engine::docker(Some("tcp://10.0.0.1:2375")).endpoint.unwrap_err();
        assert!(e.starts_with("DOCKER_HOST=tcp://10.0.0.1:2375 is not a unix:// socket"), "{e}");
        assert_eq!(
            Engine::podman(Some("unix:///p.sock"), None).endpoint,
            Ok(Endpoint::Api { socket: "/p.sock".into() })
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("podman"), "").unwrap();
        let path = dir.path().display().to_string();
        assert_eq!(
            Engine::podman(None, Some(&path)).endpoint,
            Ok(Endpoint::Cli { program: dir.path().join("podman") })
        );
    }

    #[test]
    fn docker_and_podman_inspect_answers() {
        let docker = json!({"Id": "abc", "Name": "/web", "State": {"Status": "running", "Running": true, "Pid": 42}});
        assert_eq!(
            parse_inspect(&docker).unwrap(),
            ContainerInfo {
                id: "abc".into(),
                name: "web".into(),
                running: true,
                status: "running".into(),
                pid: 42
            }
        );
        let podman = json!([{"Id": "def", "Name": "db", "State": {"Status": "exited", "Running": false, "Pid": 0}}]);
        let info = parse_inspect(&podman).unwrap();
        assert_eq!(
            (info.name.as_str(), info.running, info.status.as_str()),
            ("db", false, "exited")
        );
        assert!(parse_inspect(&json!([])).is_err());
        assert!(parse_inspect(&json!({"State": {}})).unwrap_err().contains("Id"));
    }
}
