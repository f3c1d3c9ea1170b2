//! Watching the cluster: pools, nodes and every node's blocks, the view the
//! routes are programmed from. A cancelled or compacted watch, or a broken
//! connection, is answered by listing everything again and watching on from
//! there.
//!
//! Records come from etcd, which every node (and whatever holds a node's
//! credentials) can write: a block becomes a route only if [`blocks::check`]
//! believes it, and never when it covers a node's address or the node network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, KeyValue, WatchOptions};
use ipnet::IpNet;
use tokio::sync::mpsc::UnboundedSender;

use crate::blocks;
use crate::etcd::Etcd;
use crate::metrics::Metrics;
use crate::pools;
use crate::records::{self, BlockRecord, NodeRecord, PoolRecord};
use crate::routes::Desired;

/// What the agent knows of the cluster.
#[derive(Default)]
struct View {
    pools: BTreeMap<String, PoolRecord>,
    nodes: BTreeMap<String, NodeRecord>,
    /// By key, as decoded; believed or not in [`View::desired`].
    blocks: BTreeMap<String, BlockRecord>,
    /// Keys refused so far, each logged once (until it changes).
    refused: BTreeMap<String, String>,
}

/// Where routes must never point: this node's networks (the prefixes of its
/// addresses, e.g. the hosts' LAN), and every registered node's address.
pub struct Protected {
    pub me: String,
    pub networks: Vec<IpNet>,
}

impl View {
    /// Applies one record (`None`: deleted). True when the view changed.
    fn apply(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        let decode_node = |v: &[u8]| {
            let n: NodeRecord = records::decode(v)?;
            (records::valid_name(&n.name) && key == records::node_key(&n.name)).then_some(n)
        };
        if let Some(name) = key.strip_prefix(records::POOLS) {
            let rec = value.and_then(|v| {
                pools::decode(key, v).map_err(|e| tracing::warn!("ignoring {e}")).ok()
            });
            set(&mut self.pools, name, rec)
        } else if let Some(name) = key.strip_prefix(records::NODES) {
            let rec = value.and_then(|v| {
                let n = decode_node(v);
                if n.is_none() {
                    tracing::warn!("ignoring {key}: not a node record under its own name");
                }
                n
            });
            set(&mut self.nodes, name, rec)
        } else if key.starts_with(records::BLOCKS) {
            set(&mut self.blocks, key, value.and_then(records::decode::<BlockRecord>))
        } else {
            false
        }
    }

    /// Other nodes' believable blocks, grouped by node address.
    fn desired(&mut self, protected: &Protected) -> Desired {
        let node_ips: Vec<IpAddr> = self.nodes.values().map(|n| n.ip).collect();
        let mut d = Desired::new();
        let mut refused = BTreeMap::new();
        for (key, b) in self.blocks.iter().filter(|(_, b)| b.node != protected.me) {
            let verdict = blocks::check(key, b, &self.pools, &self.nodes).and_then(|()| {
                if let Some(n) = protected.networks.iter().find(|n| overlap(n, &b.block)) {
                    return Err(format!("{} overlaps this node's network {n}", b.block));
                }
                if let Some(ip) = node_ips.iter().find(|ip| b.block.contains(*ip)) {
                    return Err(format!("{} covers node address {ip}", b.block));
                }
                Ok(())
            });
            match verdict {
                Ok(()) => d.entry(b.node_ip).or_default().push(b.block),
                Err(why) => {
                    if self.refused.get(key) != Some(&why) {
                        tracing::warn!("not routing block record {key}: {why}");
                    }
                    refused.insert(key.clone(), why);
                }
            }
        }
        self.refused = refused;
        for v in d.values_mut() {
            v.sort();
        }
        d
    }
}

/// The routes a snapshot of etcd's records gives a node: what the agent
/// programs after listing everything (and what the fuzz target checks).
pub fn desired_from<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a [u8])>, protected: &Protected,
) -> Desired {
    let mut view = View::default();
    for (key, value) in records {
        view.apply(key, Some(value));
    }
    view.desired(protected)
}

fn set<T: PartialEq>(map: &mut BTreeMap<String, T>, key: &str, value: Option<T>) -> bool {
    match value {
        Some(v) => map.insert(key.to_string(), v).as_ref() != map.get(key),
        None => map.remove(key).is_some(),
    }
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Runs forever. `own_deleted` hears about our own blocks vanishing (an expired
/// lease during an etcd outage, or a delete by hand), so they can be claimed back.
pub async fn run(
    etcd: Etcd, protected: Protected, programmer: Sender<Desired>,
    own_deleted: UnboundedSender<BlockRecord>, metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&etcd, &protected, &programmer, &own_deleted, &metrics).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!("watching the cluster: {e}; listing again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn key_of(kv: &KeyValue) -> Option<&str> {
    kv.key_str().ok()
}

async fn watch_once(
    etcd: &Etcd, protected: &Protected, programmer: &Sender<Desired>,
    own_deleted: &UnboundedSender<BlockRecord>, metrics: &Metrics,
) -> crate::error::Result<()> {
    let (kvs, rev) = etcd.get_prefix(records::ROOT).await?;
    let mut view = View::default();
    for kv in &kvs {
        if let Some(key) = key_of(kv) {
            view.apply(key, Some(kv.value()));
        }
    }
    let publish = |view: &mut View| {
        let _ = programmer.send(view.desired(protected));
        metrics.records_refused.set(view.refused.len() as i64);
    };
    publish(&mut view);
    let opts = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(rev + 1);
    let prefix = records::ROOT.to_string();
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
                "cluster watch cancelled (compacted at {}): listing again",
                resp.compact_revision()
            );
            return Ok(());
        }
        let mut changed = false;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(key) = key_of(kv) else { continue };
            match ev.event_type() {
                EventType::Put => changed |= view.apply(key, Some(kv.value())),
                EventType::Delete => {
                    if let Some(old) = view.blocks.get(key).cloned() {
                        if old.node == protected.me {
                            let _ = own_deleted.send(old);
                        }
                    }
                    changed |= view.apply(key, None);
                }
            }
        }
        if changed {
            publish(&mut view);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        let mut v = View::default();
        let pool = br#"{"name":"p","subnet":"198.19.0.0/20","blockPrefix":26}"#;
        assert!(v.apply(&records::pool_key("p"), Some(pool)));
        for (n, ip) in [("me", "198.18.0.1"), ("n2", "198.18.0.2")] {
            let rec = format!(r#"{{"name":"{n}","ip":"{ip}","mode":"routed","startedUnix":1}}"#);
            assert!(v.apply(&records::node_key(n), Some(rec.as_bytes())));
        }
        v
    }

    fn put_block(v: &mut View, node: &str, ip: &str, block: &str) -> bool {
        let b: IpNet = block.parse().unwrap();
        let rec = BlockRecord {
            pool: "p".into(),
            block: b,
            node: node.into(),
            node_ip: ip.parse().unwrap(),
        };
        v.apply(&records::block_key("p", &b), Some(&records::encode(&rec)))
    }

    fn protected() -> Protected {
        Protected { me: "me".into(), networks: vec!["198.18.0.0/24".parse().unwrap()] }
    }

    #[test]
    fn desired_groups_remote_blocks_by_node() {
        let mut v = view();
        put_block(&mut v, "me", "198.18.0.1", "198.19.0.0/26");
        put_block(&mut v, "n2", "198.18.0.2", "198.19.0.64/26");
        put_block(&mut v, "n2", "198.18.0.2", "198.19.0.128/26");
        let d = v.desired(&protected());
        assert_eq!(d.len(), 1);
        assert_eq!(d[&"198.18.0.2".parse::<IpAddr>().unwrap()].len(), 2);
        assert!(v.refused.is_empty());
    }

    #[test]
    fn forged_blocks_never_become_routes() {
        let mut v = view();
        // A pool over everything and one over the node network, as a forger would write them.
        for (name, subnet, block) in [("all", "0.0.0.0/0", 26), ("lan", "198.18.0.0/24", 24)] {
            let rec = format!(r#"{{"name":"{name}","subnet":"{subnet}","blockPrefix":{block}}}"#);
            v.apply(&records::pool_key(name), Some(rec.as_bytes()));
        }
        assert!(!v.pools.contains_key("all"), "a pool of 2^26 blocks is refused");
        let forged = |pool: &str, block: &str, node: &str, ip: &str| {
            let b: IpNet = block.parse().unwrap();
            let rec = BlockRecord {
                pool: pool.into(),
                block: b,
                node: node.into(),
                node_ip: ip.parse().unwrap(),
            };
            (records::block_key(pool, &b), records::encode(&rec))
        };
        for (key, value) in [
            forged("p", "0.0.0.0/0", "n2", "198.18.0.2"),
            forged("all", "0.0.0.0/0", "n2", "198.18.0.2"),
            forged("lan", "198.18.0.0/24", "n2", "198.18.0.2"),
            forged("p", "198.19.0.64/26", "n3", "198.18.0.3"),
            forged("p", "198.19.0.128/26", "n2", "198.18.0.9"),
        ] {
            v.apply(&key, Some(&value));
        }
        assert!(v.desired(&protected()).is_empty());
        assert_eq!(v.refused.len(), 5, "{:?}", v.refused);
        // Bad values under block keys are not blocks at all.
        assert!(!v.apply("/nearhost/blocks/p/x", Some(b"{nope")));
    }
}
