//! The bridge between the CNI plugin and the node agent for cluster pools.
//!
//! The agent claims address blocks in etcd and records them in the pool's local
//! store (`DATA_DIR/pool-NAME/state.json`, field `blocks`), under the same lock
//! the plugin allocates under, so an ADD never waits on etcd. When the blocks
//! run low or out, the plugin asks the agent for another over a Unix socket
//! (`DATA_DIR/agent.sock`), one JSON line each way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{IpamError, Result};

/// The local store name of pool `pool` (a directory under the data dir).
pub fn store_name(pool: &str) -> String {
    format!("pool-{pool}")
}

pub fn agent_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.sock")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Claim another block of `pool` now (`if_low`: only if free addresses are
    /// below the agent's low-water mark; answered before the claim is made).
    Claim {
        pool: String,
        #[serde(default, rename = "ifLow")]
        if_low: bool,
    },
    /// The agent's view, for `nearhost agent status` and tests.
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With an error: the CNI error code the plugin should answer with (7 for
    /// an unknown pool, 100 for an exhausted one); absent means "try again later".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// Sends one request to the agent of `data_dir`, waiting at most `timeout`.
pub fn ask_agent(data_dir: &Path, req: &Request, timeout: Duration) -> Result<Response> {
    let path = agent_socket(data_dir);
    let unreachable = |e: std::io::Error| {
        IpamError::Unavailable(format!(
            "the node agent is unreachable at {} ({e}); is `nearhost agent` running?",
            path.display()
        ))
    };
    let stream = UnixStream::connect(&path).map_err(unreachable)?;
    stream.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    stream.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let mut line = serde_json::to_string(req).expect("request serializes");
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(|e| {
        IpamError::Unavailable(format!(
            "the node agent did not answer within {} ms ({e})",
            timeout.as_millis()
        ))
    })?;
    serde_json::from_str(&answer)
        .map_err(|e| IpamError::Unavailable(format!("the node agent answered nonsense: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r = Request::Claim { pool: "p".into(), if_low: true };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"op":"claim","pool":"p","ifLow":true}"#);
        let back: Request = serde_json::from_str(r#"{"op":"claim","pool":"q"}"#).unwrap();
        assert_eq!(back, Request::Claim { pool: "q".into(), if_low: false });
        assert_eq!(serde_json::to_string(&Request::Status).unwrap(), r#"{"op":"status"}"#);
    }

    #[test]
    fn no_agent_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        match ask_agent(dir.path(), &Request::Status, Duration::from_millis(100)) {
            Err(IpamError::Unavailable(m)) => assert!(m.contains("agent.sock"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
