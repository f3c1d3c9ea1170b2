//! Watching every node's blocks: the cluster view the routes are programmed
//! from. A cancelled or compacted watch, or a broken connection, is answered
//! by listing everything again and watching on from there.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;

use crate::etcd::Etcd;
use crate::records::{self, BlockRecord};
use crate::routes::Desired;

/// Remote nodes' blocks, grouped by node address.
fn desired(view: &BTreeMap<String, BlockRecord>, me: &str) -> Desired {
    let mut d = Desired::new();
    for b in view.values().filter(|b| b.node != me) {
        d.entry(b.node_ip).or_default().push(b.block);
    }
    for v in d.values_mut() {
        v.sort();
    }
    d
}

/// Runs forever. `own_deleted` hears about our own blocks vanishing (an expired
/// lease during an etcd outage), so they can be claimed back.
pub async fn run(
    etcd: Etcd, me: String, programmer: Sender<Desired>, own_deleted: UnboundedSender<BlockRecord>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&etcd, &me, &programmer, &own_deleted).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!("watching blocks: {e}; listing again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn watch_once(
    etcd: &Etcd, me: &str, programmer: &Sender<Desired>, own_deleted: &UnboundedSender<BlockRecord>,
) -> crate::error::Result<()> {
    let (kvs, rev) = etcd.get_prefix(records::BLOCKS).await?;
    let mut view: BTreeMap<String, BlockRecord> = kvs
        .iter()
        .filter_map(|kv| {
            Some((kv.key_str().ok()?.to_string(), records::decode::<BlockRecord>(kv.value())?))
        })
        .collect();
    let _ = programmer.send(desired(&view, me));
    let opts = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(rev + 1);
    let prefix = records::BLOCKS.to_string();
    let mut stream =
        etcd.call("watch", |mut c| async move { c.watch(prefix, Some(opts)).await }).await?;
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|source| crate::error::AgentError::Etcd { op: "watch", source })?;
        let Some(resp) = msg else { return Ok(()) };
        if resp.canceled() || resp.compact_revision() > 0 {
            tracing::info!(
                "block watch cancelled (compacted at {}): listing again",
                resp.compact_revision()
            );
            return Ok(());
        }
        let mut changed = false;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            match ev.event_type() {
                EventType::Put => {
                    if let Some(rec) = records::decode::<BlockRecord>(kv.value()) {
                        changed |= view.insert(key.to_string(), rec.clone()).as_ref() != Some(&rec);
                    }
                }
                EventType::Delete => {
                    if let Some(old) = view.remove(key) {
                        changed = true;
                        if old.node == me {
                            let _ = own_deleted.send(old);
                        }
                    }
                }
            }
        }
        if changed {
            let _ = programmer.send(desired(&view, me));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_groups_remote_blocks_by_node() {
        let rec = |node: &str, ip: &str, block: &str| BlockRecord {
            pool: "p".into(),
            block: block.parse().unwrap(),
            node: node.into(),
            node_ip: ip.parse().unwrap(),
        };
        let mut view = BTreeMap::new();
        view.insert("a".into(), rec("me", "198.18.0.1", "198.19.0.0/26"));
        view.insert("b".into(), rec("n2", "198.18.0.2", "198.19.0.64/26"));
        view.insert("c".into(), rec("n2", "198.18.0.2", "198.19.0.128/26"));
        let d = desired(&view, "me");
        assert_eq!(d.len(), 1);
        assert_eq!(d[&"198.18.0.2".parse::<std::net::IpAddr>().unwrap()].len(), 2);
    }
}
