//! The node's etcd session: two leases, kept alive every `--lease-ttl`/3.
//!
//! - The *session lease* (TTL `--lease-ttl`, 30 s by default) holds the node
//!   record: other nodes route to this node's blocks only while it is alive,
//!   so a dead node's routes go within the TTL.
//! - The *blocks lease* (TTL `--block-lease-ttl`, an hour by default) holds the
//!   node's blocks. Its ID is kept in `DATA_DIR/agent-lease.json`, so a
//!   restarted agent carries on with it: a restart, an upgrade or an etcd
//!   outage shorter than its TTL never gives a block away. Each keep-alive
//!   answer proves the blocks are ours until (the time the request was sent +
//!   the TTL); that bound, on the boot clock, is what the agent writes for the
//!   plugin, which allocates from the blocks only before it.
//!
//! If etcd says a lease is gone, or no keep-alive has succeeded for a whole
//! session TTL, the session is lost and the agent makes a new one (and takes
//! its blocks back).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::PutOptions;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::error::{AgentError, Result};
use crate::etcd::Etcd;
use crate::records::{self, NodeRecord};

/// Safety margin taken off every proof of ownership (clock rate differences
/// between this host and the etcd leader, scheduling delays).
const MARGIN_MS: u64 = 1000;

pub struct Session {
    /// The session lease (node record).
    pub lease: i64,
    /// The blocks lease.
    pub blocks_lease: i64,
    /// Fires when the session is lost.
    pub lost: mpsc::Receiver<&'static str>,
    /// Boot-clock milliseconds until which the blocks lease surely holds.
    pub held_until: watch::Receiver<u64>,
    keepers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for k in &self.keepers {
            k.abort();
        }
    }
}

/// The blocks lease as the agent persists it.
#[derive(Debug, Serialize, Deserialize)]
struct SavedLease {
    #[serde(rename = "blocksLease")]
    blocks_lease: i64,
}

fn saved_lease_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-lease.json")
}

/// The lease timing of a session.
#[derive(Debug, Clone)]
pub struct Ttls {
    pub session: i64,
    pub blocks: i64,
}

/// Grants the session lease, registers the node under it, finds (or grants)
/// the blocks lease, and starts keeping both alive.
pub async fn open(etcd: &Etcd, node: &NodeRecord, ttls: &Ttls, data_dir: &Path) -> Result<Session> {
    let ttl = ttls.session;
    let grant =
        etcd.call("lease_grant", |mut c| async move { c.lease_grant(ttl, None).await }).await?;
    let lease = grant.id();
    let key = records::node_key(&node.name);
    let value = records::encode(node);
    etcd.call("put", |mut c| async move {
        c.put(key, value, Some(PutOptions::new().with_lease(lease))).await
    })
    .await?;
    let (blocks_lease, held) = blocks_lease(etcd, ttls.blocks, data_dir).await?;
    let (lost_tx, lost) = mpsc::channel(2);
    let (held_tx, held_until) = watch::channel(held);
    let period = Duration::from_millis((ttls.session as u64 * 1000 / 3).max(300));
    let window = Duration::from_secs(ttls.session as u64);
    let keepers = vec![
        tokio::spawn(keep_alive(etcd.clone(), lease, period, window, None, lost_tx.clone())),
        tokio::spawn(keep_alive(
            etcd.clone(),
            blocks_lease,
            period,
            window,
            Some(held_tx),
            lost_tx,
        )),
    ];
    Ok(Session { lease, blocks_lease, lost, held_until, keepers })
}

/// The saved blocks lease if etcd still has it, else a new one (saved); with
/// the boot-clock time until which it surely holds.
async fn blocks_lease(etcd: &Etcd, ttl: i64, data_dir: &Path) -> Result<(i64, u64)> {
    let path = saved_lease_path(data_dir);
    let saved: Option<SavedLease> = nearhost_state::read_json(&path).unwrap_or_else(|e| {
        tracing::warn!("{e}; granting a new blocks lease");
        None
    });
    if let Some(id) = saved.map(|s| s.blocks_lease) {
        let sent = nearhost_ipam::boot_clock_ms();
        let left = etcd
            .call("lease_time_to_live", |mut c| async move { c.lease_time_to_live(id, None).await })
            .await?
            .ttl();
        if left > 0 {
            tracing::info!("carrying on with blocks lease {id:x} ({left} s left)");
            return Ok((id, held_until(sent, left)));
        }
        tracing::warn!("blocks lease {id:x} has expired: this node's blocks may be another's now");
    }
    let sent = nearhost_ipam::boot_clock_ms();
    let grant =
        etcd.call("lease_grant", |mut c| async move { c.lease_grant(ttl, None).await }).await?;
    nearhost_state::write_json(&path, &SavedLease { blocks_lease: grant.id() })
        .map_err(|e| AgentError::Ipam(e.into()))?;
    Ok((grant.id(), held_until(sent, grant.ttl())))
}

fn held_until(sent_ms: u64, ttl_s: i64) -> u64 {
    (sent_ms + ttl_s.max(0) as u64 * 1000).saturating_sub(MARGIN_MS)
}

async fn keep_alive(
    etcd: Etcd, lease: i64, period: Duration, window: Duration, held: Option<watch::Sender<u64>>,
    lost: mpsc::Sender<&'static str>,
) {
    let mut last_ok = Instant::now();
    let why = 'reconnect: loop {
        if last_ok.elapsed() > window {
            break "no keep-alive answered within the session TTL";
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
            let sent = nearhost_ipam::boot_clock_ms();
            if keeper.keep_alive().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue 'reconnect;
            }
            match tokio::time::timeout(period, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    last_ok = Instant::now();
                    if let Some(h) = &held {
                        h.send_replace(held_until(sent, r.ttl()));
                    }
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!("etcd lease {lease:x} expired");
                    break 'reconnect "a lease expired";
                }
                _ => {
                    if last_ok.elapsed() > window {
                        break 'reconnect "no keep-alive answered within the session TTL";
                    }
                    continue 'reconnect;
                }
            }
            tokio::time::sleep(period).await;
        }
    };
    let _ = lost.send(why).await;
}
