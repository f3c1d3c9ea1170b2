//! Pool definitions in etcd: `nearhost pool create | ls | rm`. Every change is
//! one transaction guarded by a counter all pool changes bump, so two creates
//! of overlapping pools can't both succeed and nothing is ever half-written.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use ipnet::IpNet;
use serde::Serialize;

use crate::error::{AgentError, Result};
use crate::etcd::Etcd;
use crate::records::{self, BlockRecord, PoolRecord};

/// Default block size: /26 for IPv4 (64 addresses), /122 for IPv6.
pub fn default_block_prefix(subnet: &IpNet) -> u8 {
    if subnet.addr().is_ipv6() {
        122
    } else {
        26
    }
}

/// Checks a pool definition; every error names the flag and value.
pub fn validate(name: &str, subnet: &IpNet, block_prefix: u8) -> Result<PoolRecord> {
    if !records::valid_name(name) {
        return Err(AgentError::invalid(
            "NAME",
            format!("{name:?} is not a pool name (letters, digits, - _ ., at most 63)"),
        ));
    }
    if subnet.addr() != subnet.network() {
        return Err(AgentError::invalid(
            "--subnet",
            format!("{subnet} has host bits set; did you mean {}?", subnet.trunc()),
        ));
    }
    let max = if subnet.addr().is_ipv6() { 126 } else { 30 };
    if block_prefix < subnet.prefix_len() || block_prefix > max {
        return Err(AgentError::invalid(
            "--block-size",
            format!(
                "/{block_prefix} must be between the subnet's /{} and /{max}",
                subnet.prefix_len()
            ),
        ));
    }
    if block_prefix - subnet.prefix_len() > 24 {
        return Err(AgentError::invalid(
            "--block-size",
            format!("/{block_prefix} makes more than 2^24 blocks of {subnet}; use larger blocks"),
        ));
    }
    Ok(PoolRecord { name: name.to_string(), subnet: *subnet, block_prefix })
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A pool record read from etcd, checked as `pool create` checks its flags:
/// whatever can write to etcd could have written it, and an agent must refuse
/// it rather than panic on it or claim blocks no `pool create` would make.
pub fn decode(key: &str, value: &[u8]) -> Result<PoolRecord> {
    let bad = |reason: String| AgentError::invalid(key, reason);
    let rec: PoolRecord =
        records::decode(value).ok_or_else(|| bad("is not a pool record".into()))?;
    if key != records::pool_key(&rec.name) {
        return Err(bad(format!("holds pool {:?}, whose key is another", rec.name)));
    }
    validate(&rec.name, &rec.subnet, rec.block_prefix)
        .map_err(|e| bad(format!("is not a pool `pool create` would make: {e}")))
}

/// All valid pools (others are logged and left out), and the guard's mod
/// revision they were read at.
async fn read_pools(etcd: &Etcd) -> Result<(Vec<PoolRecord>, i64)> {
    let (kvs, _) = etcd.get_prefix(records::POOLS).await?;
    let pools = kvs
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().unwrap_or("(a key that is not UTF-8)");
            decode(key, kv.value()).map_err(|e| tracing::warn!("ignoring {e}")).ok()
        })
        .collect();
    let guard = etcd.get(records::POOLS_GUARD).await?.map(|kv| kv.mod_revision()).unwrap_or(0);
    Ok((pools, guard))
}

pub async fn create(etcd: &Etcd, pool: &PoolRecord) -> Result<()> {
    for _ in 0..5 {
        let (pools, guard) = read_pools(etcd).await?;
        if let Some(p) = pools.iter().find(|p| p.name == pool.name) {
            return Err(AgentError::PoolExists { name: p.name.clone(), subnet: p.subnet });
        }
        if let Some(o) = pools.iter().find(|o| overlaps(&o.subnet, &pool.subnet)) {
            return Err(AgentError::Overlap {
                name: pool.name.clone(),
                subnet: pool.subnet,
                other: o.name.clone(),
                other_subnet: o.subnet,
            });
        }
        let key = records::pool_key(&pool.name);
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Compare::mod_revision(records::POOLS_GUARD, CompareOp::Equal, guard),
            ])
            .and_then(vec![
                TxnOp::put(key, records::encode(pool), None),
                TxnOp::put(records::POOLS_GUARD, pool.name.clone(), None),
            ]);
        if etcd.txn(txn).await?.succeeded() {
            return Ok(());
        }
        // another pool change got in between: look again
    }
    Err(AgentError::Contention("the pool list".into()))
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolUsage {
    #[serde(flatten)]
    pub pool: PoolRecord,
    pub blocks_total: u128,
    pub blocks_claimed: usize,
    pub nodes: Vec<String>,
}

pub async fn get(etcd: &Etcd, name: &str) -> Result<PoolRecord> {
    if !records::valid_name(name) {
        return Err(AgentError::invalid("pool", format!("{name:?} is not a pool name")));
    }
    let key = records::pool_key(name);
    let kv = etcd.get(&key).await?.ok_or_else(|| AgentError::UnknownPool(name.to_string()))?;
    decode(&key, kv.value())
}

pub async fn blocks(etcd: &Etcd, pool: &str) -> Result<Vec<BlockRecord>> {
    let (kvs, _) = etcd.get_prefix(&records::blocks_of(pool)).await?;
    Ok(kvs.iter().filter_map(|kv| records::decode::<BlockRecord>(kv.value())).collect())
}

/// The nodes holding `blocks`, each once, sorted.
fn holders(blocks: &[BlockRecord]) -> Vec<String> {
    let mut nodes: Vec<String> = blocks.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

pub async fn list(etcd: &Etcd) -> Result<Vec<PoolUsage>> {
    let (pools, _) = read_pools(etcd).await?;
    let mut out = Vec::new();
    for p in pools {
        let b = blocks(etcd, &p.name).await?;
        out.push(PoolUsage {
            blocks_total: p.block_count(),
            blocks_claimed: b.len(),
            nodes: holders(&b),
            pool: p,
        });
    }
    Ok(out)
}

/// Removes a pool; refuses while blocks are claimed unless `force` (then the
/// blocks go too, in the same transaction).
pub async fn remove(etcd: &Etcd, name: &str, force: bool) -> Result<()> {
    let key = records::pool_key(name);
    let kv = etcd.get(&key).await?.ok_or_else(|| AgentError::UnknownPool(name.to_string()))?;
    let claimed = blocks(etcd, name).await?;
    if !claimed.is_empty() && !force {
        return Err(AgentError::PoolInUse {
            pool: name.to_string(),
            count: claimed.len(),
            nodes: holders(&claimed).join(", "),
        });
    }
    let mut ops = vec![
        TxnOp::delete(key.clone(), None),
        TxnOp::put(records::POOLS_GUARD, format!("-{name}"), None),
    ];
    if force {
        ops.push(TxnOp::delete(
            records::blocks_of(name),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        ));
    }
    let txn = Txn::new()
        .when(vec![Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision())])
        .and_then(ops);
    if etcd.txn(txn).await?.succeeded() {
        Ok(())
    } else {
        Err(AgentError::Contention(format!("pool {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_flag() {
        let s: IpNet = "198.18.64.0/18".parse().unwrap();
        assert!(validate("p", &s, 26).is_ok());
        let err = |r: Result<PoolRecord>| match r {
            Err(AgentError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(validate("a/b", &s, 26)), "NAME");
        assert_eq!(err(validate("p", &"198.18.64.1/18".parse().unwrap(), 26)), "--subnet");
        assert_eq!(err(validate("p", &s, 16)), "--block-size");
        assert_eq!(err(validate("p", &s, 31)), "--block-size");
        assert_eq!(default_block_prefix(&"2001:2::/48".parse().unwrap()), 122);
        assert!(overlaps(&"198.18.0.0/16".parse().unwrap(), &"198.18.64.0/18".parse().unwrap()));
        assert!(!overlaps(&"198.18.0.0/18".parse().unwrap(), &"198.18.64.0/18".parse().unwrap()));
    }

    #[test]
    fn records_from_etcd_are_checked_like_flags() {
        let key = records::pool_key("p");
        let good = br#"{"name":"p","subnet":"198.18.64.0/18","blockPrefix":26}"#;
        assert_eq!(decode(&key, good).unwrap().block_prefix, 26);
        for (bad, why) in [
            (&br#"{"name":"p","subnet":"198.18.64.0/18","blockPrefix":40}"#[..], "--block-size"),
            (br#"{"name":"p","subnet":"198.18.64.0/18","blockPrefix":255}"#, "--block-size"),
            (br#"{"name":"p","subnet":"2001:2::/48","blockPrefix":200}"#, "--block-size"),
            (br#"{"name":"p","subnet":"198.18.64.1/18","blockPrefix":26}"#, "--subnet"),
            (br#"{"name":"q","subnet":"198.18.64.0/18","blockPrefix":26}"#, "whose key"),
            (br#"{"name":"../x","subnet":"198.18.64.0/18","blockPrefix":26}"#, "whose key"),
            (b"{nope", "not a pool record"),
        ] {
            let e = decode(&key, bad).unwrap_err().to_string();
            assert!(e.starts_with(&key) && e.contains(why), "{e}");
        }
    }
}
