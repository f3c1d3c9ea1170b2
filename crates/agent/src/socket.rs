//! The agent's Unix socket: the CNI plugin asks for another block here when
//! its node's blocks run low or out (one JSON line each way).

use std::path::PathBuf;
use std::time::Duration;

use nearhost_ipam::agent_client::{Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::error::{AgentError, Result};

/// A request passed to the agent's main loop, with where to answer.
pub struct Ask {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

pub fn bind(path: &PathBuf) -> Result<UnixListener> {
    // A socket file left by a previous run: only a listener can be there, so
    // if nobody answers on it, it is stale.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        AgentError::io(format!("listen on {} (is another agent running?)", path.display()), e)
    })?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(listener)
}

pub async fn serve(listener: UnixListener, to_agent: mpsc::Sender<Ask>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        let to_agent = to_agent.clone();
        tokio::spawn(async move {
            let (read, mut write) = sock.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let response = match serde_json::from_str::<Request>(&line) {
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
