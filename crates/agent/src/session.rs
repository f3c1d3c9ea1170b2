//! The node's etcd session: a lease (TTL `--lease-ttl`) that the node record
//! and every block are bound to, kept alive every TTL/3. If etcd says the lease
//! is gone, or no keep-alive has succeeded for a whole TTL, the session is lost
//! and the agent makes a new one (and takes its blocks back).

use std::time::{Duration, Instant};

use etcd_client::PutOptions;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::etcd::Etcd;
use crate::records::{self, NodeRecord};

pub struct Session {
    pub lease: i64,
    /// Fires when the session is lost.
    pub lost: oneshot::Receiver<()>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Grants a lease, registers the node under it, and starts keeping it alive.
pub async fn open(etcd: &Etcd, node: &NodeRecord, ttl: i64) -> Result<Session> {
    let grant =
        etcd.call("lease_grant", |mut c| async move { c.lease_grant(ttl, None).await }).await?;
    let lease = grant.id();
    let key = records::node_key(&node.name);
    let value = records::encode(node);
    etcd.call("put", |mut c| async move {
        c.put(key, value, Some(PutOptions::new().with_lease(lease))).await
    })
    .await?;
    let (tx, lost) = oneshot::channel();
    let keeper = tokio::spawn(keep_alive(etcd.clone(), lease, ttl, tx));
    Ok(Session { lease, lost, keeper })
}

async fn keep_alive(etcd: Etcd, lease: i64, ttl: i64, lost: oneshot::Sender<()>) {
    let period = Duration::from_millis((ttl as u64 * 1000 / 3).max(300));
    let window = Duration::from_secs(ttl as u64);
    let mut last_ok = Instant::now();
    'reconnect: loop {
        if last_ok.elapsed() > window {
            break;
        }
        let opened = etcd
            .call("lease_keep_alive", |mut c| async move { c.lease_keep_alive(lease).await })
            .await;
        let (mut keeper, mut stream) = match opened {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("etcd keep-alive stream: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue 'reconnect;
            }
            match tokio::time::timeout(period, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!("etcd lease {lease:x} expired");
                    break 'reconnect;
                }
                _ => {
                    if last_ok.elapsed() > window {
                        break 'reconnect;
                    }
                    continue 'reconnect;
                }
            }
            tokio::time::sleep(period).await;
        }
    }
    let _ = lost.send(());
}
