//! The agent's Unix socket: the CNI plugin asks for another block here when
//! its node's blocks run low or out (one JSON line each way).

use std::path::PathBuf;
use std::time::Duration;

use nearhost_ipam::agent_client::{Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::error::{AgentError, Result};

/// A request passed to the agent's main loop, with where to answer.
pub struct Ask {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The longest request line read (requests are a few dozen bytes).
pub const MAX_REQUEST: u64 = 4096;
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// Listens at `path`, a socket only root can connect to from the moment it
/// exists: it is bound under a temporary name, made 0600, then renamed into
/// place (a failure at any step is an error, not a socket left open to all).
pub fn bind(path: &PathBuf) -> Result<UnixListener> {
    // A socket file left by a previous run: only a listener can be there, so
    // if nobody answers on it, it is stale.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    if path.exists() {
        return Err(AgentError::io(
            format!("listen on {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "another agent answers there"),
        ));
    }
    if let Some(dir) = path.parent() {
        nearhost_state::create_dir(dir, nearhost_state::PRIVATE_DIR)
            .map_err(|e| AgentError::Ipam(e.into()))?;
    }
    let temp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp)
        .map_err(|e| AgentError::io(format!("listen on {}", temp.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    let placed = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| AgentError::io(format!("make {} private", temp.display()), e))
        .and_then(|()| {
            std::fs::rename(&temp, path).map_err(|e| {
                AgentError::io(format!("move {} to {}", temp.display(), path.display()), e)
            })
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(listener)
}

pub async fn serve(listener: UnixListener, to_agent: mpsc::Sender<Ask>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = std::sync::Arc::clone(&slots).acquire_owned().await.expect("never closed");
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::warn!("agent socket: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let to_agent = to_agent.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (read, mut write) = sock.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read).take(MAX_REQUEST);
            if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let too_long = !line.ends_with('\n') && reader.limit() == 0;
            let parsed = match too_long {
                true => Err(format!("longer than {MAX_REQUEST} bytes")),
                false => serde_json::from_str::<Request>(&line).map_err(|e| e.to_string()),
            };
            let response = match parsed {
                Err(e) => Response {
                    ok: false,
                    error: Some(format!("bad request: {e}")),
                    code: None,
                    body: None,
                },
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if to_agent.send(Ask { request, reply: tx }).await.is_err() {
                        return;
                    }
                    match tokio::time::timeout(Duration::from_secs(9), rx).await {
                        Ok(Ok(r)) => r,
                        _ => Response {
                            ok: false,
                            error: Some(
                                "the agent is busy (etcd slow or unreachable); try again".into(),
                            ),
                            code: None,
                            body: None,
                        },
                    }
                }
            };
            let mut out = serde_json::to_string(&response).expect("response serializes");
            out.push('\n');
            let _ = write.write_all(out.as_bytes()).await;
        });
    }
}
