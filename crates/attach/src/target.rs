//! What `TARGET` names — a Docker or Podman container, a PID, or a network
//! namespace path — resolved to the network namespace the plugin is given
//! (`CNI_NETNS`) and a stable CNI container ID; and, later, whether it is
//! still the same namespace (for `ls` and `gc`).

use std::path::Path;

use nearhost_kernel::process::{self, start_time};
use nearhost_kernel::{KernelError, NetNs};
use serde::{Deserialize, Serialize};

use crate::engine::{self, ContainerInfo, Endpoint, Engine, EngineKind, InspectError};
use crate::error::{AttachError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Docker,
    Podman,
    Pid,
    Netns,
}

impl From<EngineKind> for TargetKind {
    fn from(k: EngineKind) -> Self {
        match k {
            EngineKind::Docker => TargetKind::Docker,
            EngineKind::Podman => TargetKind::Podman,
        }
    }
}

/// A resolved target, as recorded with its attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub kind: TargetKind,
    /// The container's name, `pid N`, or the namespace path.
    pub name: String,
    /// `CNI_CONTAINERID`: the engine's ID, `pid-PID-START`, or `netns-INODE`.
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process's start time (clock ticks after boot): tells a reused PID apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The namespace's inode: the same inode later means the same namespace.
    pub netns_inode: u64,
}

impl Target {
    /// Whether the user's `text` names this target (for detaching a target
    /// whose container is gone).
    pub fn answers_to(&self, text: &str) -> bool {
        let engine_id = matches!(self.kind, TargetKind::Docker | TargetKind::Podman)
            && text.len() >= 12
            && self.container_id.starts_with(text);
        self.name == text
            || engine_id
            || self.pid.is_some_and(|p| p.to_string() == text)
            || self.netns == text
    }
}

/// Which engine `TARGET` is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// A path is a namespace, digits a PID, anything else a container in
    /// Docker, then Podman.
    #[default]
    Auto,
    Docker,
    Podman,
}

/// Whether a recorded target still has the namespace it was attached in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Gone(String),
    /// The engine could not be asked; nothing is concluded.
    Unknown(String),
}

pub struct Resolver {
    pub choice: EngineChoice,
    pub docker: Engine,
    pub podman: Engine,
}

impl Resolver {
    /// Engines as the environment (`DOCKER_HOST`, `CONTAINER_HOST`, `PATH`) says.
    pub fn from_env(choice: EngineChoice) -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Resolver {
            choice,
            docker: Engine::docker(var("DOCKER_HOST").as_deref()),
            podman: Engine::podman(var("CONTAINER_HOST").as_deref(), var("PATH").as_deref()),
        }
    }

    pub fn resolve(&self, text: &str) -> Result<Target> {
        if text.is_empty() {
            return Err(AttachError::bad_flag(
                "TARGET",
                text,
                "is empty; give a container name or ID, a PID, or a namespace path",
            ));
        }
        let target = match self.choice {
            EngineChoice::Auto if text.starts_with('/') || text.starts_with("./") => {
                netns_target(text)?
            }
            EngineChoice::Auto if text.bytes().all(|b| b.is_ascii_digit()) => pid_target(text)?,
            _ => self.container_target(text)?,
        };
        refuse_host_namespace(&target)?;
        Ok(target)
    }

    fn engines(&self) -> Vec<&Engine> {
        match self.choice {
            EngineChoice::Auto => vec![&self.docker, &self.podman],
            EngineChoice::Docker => vec![&self.docker],
            EngineChoice::Podman => vec![&self.podman],
        }
    }

    fn container_target(&self, text: &str) -> Result<Target> {
        let (mut searched, mut unreachable) = (Vec::new(), Vec::new());
        for engine in self.engines() {
            let label = engine.kind.label();
            let endpoint = match &engine.endpoint {
                Ok(e) => e,
                Err(why) => {
                    unreachable.push(AttachError::EngineUnreachable {
                        engine: label,
                        endpoint: None,
                        reason: why.clone(),
                    });
                    continue;
                }
            };
            match engine::inspect(engine.kind, endpoint, text) {
                Ok(Some(info)) => return from_container(engine.kind, endpoint, info, text),
                Ok(None) => searched.push(format!("{label} ({endpoint})")),
                Err(InspectError::Unreachable(reason)) => {
                    unreachable.push(AttachError::EngineUnreachable {
                        engine: label,
                        endpoint: Some(endpoint.to_string()),
                        reason,
                    })
                }
                Err(InspectError::Failed(reason)) => {
                    return Err(AttachError::EngineFailed {
                        engine: label,
                        endpoint: endpoint.to_string(),
                        target: text.into(),
                        reason,
                    })
                }
            }
        }
        if !searched.is_empty() {
            return Err(AttachError::ContainerNotFound { target: text.into(), searched });
        }
        if unreachable.len() == 1 {
            return Err(unreachable.remove(0));
        }
        Err(AttachError::NoEngine {
            target: text.into(),
            reasons: unreachable.iter().map(ToString::to_string).collect(),
        })
    }

    /// Whether `t` still has the namespace it had when it was attached.
    pub fn liveness(&self, t: &Target) -> Liveness {
        match t.kind {
            TargetKind::Docker | TargetKind::Podman => container_liveness(t),
            TargetKind::Pid => {
                let pid = t.pid.unwrap_or(0);
                if start_time(pid) != t.pid_start || t.pid_start.is_none() {
                    return Liveness::Gone(format!("process {pid} exited"));
                }
                same_namespace(t, "the process moved to another network namespace")
            }
            TargetKind::Netns => {
                same_namespace(t, &format!("namespace {} no longer exists", t.netns))
            }
        }
    }
}

fn container_liveness(t: &Target) -> Liveness {
    let kind = if t.kind == TargetKind::Docker { EngineKind::Docker } else { EngineKind::Podman };
    let Some(endpoint) = &t.engine else {
        return Liveness::Unknown("the record names no engine".into());
    };
    match engine::inspect(kind, endpoint, &t.container_id) {
        Ok(None) => Liveness::Gone("container removed".into()),
        Ok(Some(info)) if !info.running => Liveness::Gone(format!("container {}", info.status)),
        Ok(Some(info)) => match netns_inode(&proc_netns(info.pid)) {
            Ok(i) if i == t.netns_inode => Liveness::Alive,
            _ => Liveness::Gone("container restarted in a new network namespace".into()),
        },
        Err(InspectError::Unreachable(why) | InspectError::Failed(why)) => {
            Liveness::Unknown(format!("{} ({endpoint}): {why}", kind.label()))
        }
    }
}

fn same_namespace(t: &Target, gone: &str) -> Liveness {
    match netns_inode(&t.netns) {
        Ok(i) if i == t.netns_inode => Liveness::Alive,
        _ => Liveness::Gone(gone.to_string()),
    }
}

fn from_container(
    kind: EngineKind, endpoint: &Endpoint, info: ContainerInfo, text: &str,
) -> Result<Target> {
    let not_running = |status: String| AttachError::NotRunning {
        target: text.into(),
        engine: kind.label(),
        status,
    };
    if !info.running || info.pid == 0 {
        return Err(not_running(info.status));
    }
    let netns = proc_netns(info.pid);
    // The container may stop between the inspect and here.
    let netns_inode = netns_inode(&netns).map_err(|_| not_running("exited".into()))?;
    Ok(Target {
        kind: kind.into(),
        name: info.name,
        container_id: info.id,
        engine: Some(endpoint.clone()),
        pid: Some(info.pid),
        pid_start: start_time(info.pid),
        netns,
        netns_inode,
    })
}

fn pid_target(text: &str) -> Result<Target> {
    let pid: u32 =
        text.parse().map_err(|_| AttachError::bad_flag("TARGET", text, "is not a PID"))?;
    let start = start_time(pid).ok_or(AttachError::ProcessNotFound { pid })?;
    let netns = proc_netns(pid);
    let netns_inode = netns_inode(&netns).map_err(|e| match e {
        e if e.is_not_found() => AttachError::ProcessNotFound { pid },
        e => AttachError::NotNetns { path: netns.clone(), reason: e.to_string() },
    })?;
    Ok(Target {
        kind: TargetKind::Pid,
        name: format!("pid {pid}"),
        container_id: format!("pid-{pid}-{start}"),
        engine: None,
        pid: Some(pid),
        pid_start: Some(start),
        netns,
        netns_inode,
    })
}

fn netns_target(text: &str) -> Result<Target> {
    let path = std::path::absolute(text)
        .map_err(|e| AttachError::NotNetns { path: text.into(), reason: e.to_string() })?;
    let netns = path.display().to_string();
    let netns_inode = netns_inode(&netns).map_err(|e| {
        let reason = match e {
            KernelError::NotNetns(_) => {
                "it is not a namespace file (give /run/netns/NAME or /proc/PID/ns/net)".to_string()
            }
            e if e.is_not_found() => "no such file".to_string(),
            e => e.to_string(),
        };
        AttachError::NotNetns { path: netns.clone(), reason }
    })?;
    Ok(Target {
        kind: TargetKind::Netns,
        name: netns.clone(),
        container_id: format!("netns-{netns_inode}"),
        engine: None,
        pid: None,
        pid_start: None,
        netns,
        netns_inode,
    })
}

/// Attaching into our own namespace would put the container's interface on
/// the host itself (and `detach` would later delete it from the host).
fn refuse_host_namespace(t: &Target) -> Result<()> {
    let ours = NetNs::current().and_then(|ns| ns.inode()).map_err(|e| AttachError::NotNetns {
        path: nearhost_kernel::netns::THREAD_NETNS.into(),
        reason: e.to_string(),
    })?;
    if ours == t.netns_inode {
        return Err(AttachError::HostNamespace { target: t.name.clone() });
    }
    Ok(())
}

fn proc_netns(pid: u32) -> String {
    process::netns_path(pid).display().to_string()
}

/// Opens `path` as a network namespace (checking it is one) and returns its inode.
pub fn netns_inode(path: &str) -> std::result::Result<u64, KernelError> {
    NetNs::open(Path::new(path))?.inode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_not_namespaces_are_refused() {
        let r = Resolver {
            choice: EngineChoice::Auto,
            docker: Engine::docker(Some("tcp://x")),
            podman: Engine::podman(Some("tcp://y"), None),
        };
        let e = r.resolve("/etc/hostname").unwrap_err().to_string();
        assert!(
            e.contains("/etc/hostname is not a network namespace: it is not a namespace file"),
            "{e}"
        );
        let e = r.resolve("/nonexistent/ns").unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        let e = r.resolve("/proc/self/ns/net").unwrap_err().to_string();
        assert!(e.contains("shares this host's network namespace"), "{e}");
    }

    #[test]
    fn no_engine_lists_every_reason() {
        let r = Resolver {
            choice: EngineChoice::Auto,
            docker: Engine::docker(Some("tcp://x")),
            podman: Engine::podman(None, Some("/nonexistent")),
        };
        match r.resolve("web") {
            Err(AttachError::NoEngine { reasons, .. }) => {
                assert!(
                    reasons[0].starts_with(
                        "Docker is not reachable: DOCKER_HOST=tcp://x is not a unix:// socket"
                    ),
                    "{reasons:?}"
                );
                assert!(
                    reasons[1].starts_with("Podman is not reachable: not installed"),
                    "{reasons:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let r = Resolver {
            choice: EngineChoice::Docker,
            docker: Engine::docker(Some("unix:///nonexistent.sock")),
            podman: Engine::podman(None, None),
        };
        let e = r.resolve("web").unwrap_err().to_string();
        assert!(
            e.starts_with("Docker is not reachable at unix:///nonexistent.sock: connect:"),
            "{e}"
        );
        assert!(
            r.resolve("99999999999").is_err(),
            "digits with --engine docker are a container name"
        );
    }

    #[test]
    fn targets_answer_to_name_id_prefix_pid_and_path() {
        let t = Target {
            kind: TargetKind::Docker,
            name: "web".into(),
            container_id: "0123456789abcdef0123".into(),
            engine: None,
            pid: Some(77),
            pid_start: Some(1),
            netns: "/proc/77/ns/net".into(),
            netns_inode: 1,
        };
        for yes in ["web", "0123456789ab", "77", "/proc/77/ns/net"] {
            assert!(t.answers_to(yes), "{yes}");
        }
        for no in ["we", "0123", "78"] {
            assert!(!t.answers_to(no), "{no}");
        }
    }
}
