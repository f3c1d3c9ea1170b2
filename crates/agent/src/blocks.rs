//! Claiming and releasing address blocks: each claim is one transaction that
//! succeeds only if the block is unclaimed and the pool still exists, and binds
//! the block to the node's lease, so a dead node's blocks return to the pool.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use ipnet::IpNet;

use crate::error::{AgentError, Result};
use crate::etcd::Etcd;
use crate::records::{self, BlockRecord, NodeRecord, PoolRecord};

/// How many candidate blocks one claim tries before giving up (each failed try
/// means another node took that block a moment earlier).
const ATTEMPTS: usize = 16;

/// The `n`-th block of the pool.
pub fn nth_block(pool: &PoolRecord, n: u128) -> IpNet {
    let base = match pool.subnet.network() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let width: u32 = if pool.subnet.addr().is_ipv6() { 128 } else { 32 };
    let addr = base + (n << (width - u32::from(pool.block_prefix)));
    let ip = if pool.subnet.addr().is_ipv6() {
        IpAddr::V6(addr.into())
    } else {
        IpAddr::V4((addr as u32).into())
    };
    IpNet::new(ip, pool.block_prefix).expect("valid block prefix")
}

/// Free blocks in claim order: starting at a place derived from the node's
/// name, so agents starting together rarely race for the same block.
pub fn candidates<'a>(
    pool: &'a PoolRecord, taken: &'a HashSet<IpNet>, node: &str,
) -> impl Iterator<Item = IpNet> + 'a {
    let total = pool.block_count();
    let start = u128::from(fnv(node)) % total;
    (0..total)
        .map(move |i| nth_block(pool, (start + i) % total))
        .filter(move |b| !taken.contains(b))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// Why another node's block record must not become a route, if it must not.
/// Anything with write access to etcd could have written it, so it is believed
/// only if it is what a `claim` by that node would have written: under its own
/// key, one block of a known pool (of that pool's block size, on a block
/// boundary), held by a registered node at the address that node registered.
pub fn check(
    key: &str, rec: &BlockRecord, pools: &BTreeMap<String, PoolRecord>,
    nodes: &BTreeMap<String, NodeRecord>,
) -> Result<(), String> {
    if key != records::block_key(&rec.pool, &rec.block) {
        return Err(format!(
            "it names block {} of pool {:?}, whose key is another",
            rec.block, rec.pool
        ));
    }
    let pool =
        pools.get(&rec.pool).ok_or_else(|| format!("there is no (valid) pool {:?}", rec.pool))?;
    if rec.block.prefix_len() != pool.block_prefix
        || rec.block.addr() != rec.block.network()
        || !pool.subnet.contains(&rec.block)
    {
        return Err(format!(
            "{} is not one of pool {:?}'s blocks (/{} blocks of {})",
            rec.block, pool.name, pool.block_prefix, pool.subnet
        ));
    }
    match nodes.get(&rec.node) {
        None => Err(format!("node {:?} is not registered", rec.node)),
        Some(n) if n.ip != rec.node_ip => Err(format!(
            "it says node {:?} is at {}, the node says {}",
            rec.node, rec.node_ip, n.ip
        )),
        Some(_) => Ok(()),
    }
}

/// Claims one free block of `pool` for `rec` (its `block` is filled in).
pub async fn claim(
    etcd: &Etcd, pool: &PoolRecord, node: &str, node_ip: IpAddr, lease: i64,
) -> Result<BlockRecord> {
    let (kvs, _) = etcd.get_prefix(&records::blocks_of(&pool.name)).await?;
    let taken: HashSet<IpNet> = kvs
        .iter()
        .filter_map(|kv| records::decode::<BlockRecord>(kv.value()))
        .map(|b| b.block)
        .collect();
    for block in candidates(pool, &taken, node).take(ATTEMPTS) {
        let rec = BlockRecord { pool: pool.name.clone(), block, node: node.to_string(), node_ip };
        if try_claim(etcd, &rec, lease).await? {
            return Ok(rec);
        }
    }
    if taken.len() as u128 >= pool.block_count() {
        return Err(AgentError::PoolExhausted {
            pool: pool.name.clone(),
            subnet: pool.subnet,
            total: pool.block_count(),
        });
    }
    Err(AgentError::Contention(format!("the blocks of pool {}", pool.name)))
}

/// Claims exactly `rec.block` if it is free (restart: take back our own).
pub async fn try_claim(etcd: &Etcd, rec: &BlockRecord, lease: i64) -> Result<bool> {
    let key = records::block_key(&rec.pool, &rec.block);
    let txn = Txn::new()
        .when(vec![
            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Compare::version(records::pool_key(&rec.pool), CompareOp::Greater, 0),
        ])
        .and_then(vec![TxnOp::put(
            key,
            records::encode(rec),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    Ok(etcd.txn(txn).await?.succeeded())
}

/// Moves our block onto a new lease (after an etcd session was re-made); false
/// when the block is no longer ours.
pub async fn rebind(etcd: &Etcd, rec: &BlockRecord, lease: i64) -> Result<bool> {
    let key = records::block_key(&rec.pool, &rec.block);
    let ours = records::encode(rec);
    let txn = Txn::new()
        .when(vec![Compare::value(key.clone(), CompareOp::Equal, ours.clone())])
        .and_then(vec![TxnOp::put(key, ours, Some(PutOptions::new().with_lease(lease)))]);
    if etcd.txn(txn).await?.succeeded() {
        return Ok(true);
    }
    try_claim(etcd, rec, lease).await
}

/// Who holds `block` now, if anyone.
pub async fn holder(etcd: &Etcd, pool: &str, block: &IpNet) -> Result<Option<BlockRecord>> {
    Ok(etcd.get(&records::block_key(pool, block)).await?.and_then(|kv| records::decode(kv.value())))
}

/// Releases our block (only if it still is ours).
pub async fn release(etcd: &Etcd, rec: &BlockRecord) -> Result<bool> {
    let key = records::block_key(&rec.pool, &rec.block);
    let txn = Txn::new()
        .when(vec![Compare::value(key.clone(), CompareOp::Equal, records::encode(rec))])
        .and_then(vec![TxnOp::delete(key, None)]);
    Ok(etcd.txn(txn).await?.succeeded())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolRecord {
        PoolRecord { name: "p".into(), subnet: "198.18.64.0/24".parse().unwrap(), block_prefix: 26 }
    }

    #[test]
    fn blocks_tile_the_pool() {
        let p = pool();
        let all: Vec<String> = (0..4).map(|n| nth_block(&p, n).to_string()).collect();
        assert_eq!(
            all,
            ["198.18.64.0/26", "198.18.64.64/26", "198.18.64.128/26", "198.18.64.192/26"]
        );
        let v6 = PoolRecord {
            name: "q".into(),
            subnet: "2001:2:1::/64".parse().unwrap(),
            block_prefix: 122,
        };
        assert_eq!(nth_block(&v6, 1).to_string(), "2001:2:1::40/122");
    }

    #[test]
    fn only_records_a_claim_would_write_are_believed() {
        let pools: BTreeMap<String, PoolRecord> = [("p".to_string(), pool())].into();
        let node = |ip: &str| NodeRecord {
            name: "n2".into(),
            ip: ip.parse().unwrap(),
            mode: "routed".into(),
            started_unix: 0,
        };
        let nodes: BTreeMap<String, NodeRecord> = [("n2".to_string(), node("198.18.0.12"))].into();
        let rec = |block: &str| BlockRecord {
            pool: "p".into(),
            block: block.parse().unwrap(),
            node: "n2".into(),
            node_ip: "198.18.0.12".parse().unwrap(),
        };
        let ok = rec("198.18.64.64/26");
        let key = |r: &BlockRecord| records::block_key(&r.pool, &r.block);
        assert_eq!(check(&key(&ok), &ok, &pools, &nodes), Ok(()));
        let refused = |r: &BlockRecord, k: &str, why: &str| {
            let e = check(k, r, &pools, &nodes).unwrap_err();
            assert!(e.contains(why), "{e}");
        };
        for block in
            ["0.0.0.0/0", "198.18.0.0/24", "198.18.64.0/24", "198.18.64.0/27", "198.18.64.1/26"]
        {
            let r = rec(block);
            refused(&r, &key(&r), "not one of pool");
        }
        refused(&ok, &records::block_key("p", &"198.18.64.128/26".parse().unwrap()), "key");
        let mut other_pool = ok.clone();
        other_pool.pool = "q".into();
        refused(&other_pool, &key(&other_pool), "no (valid) pool");
        let mut stranger = ok.clone();
        stranger.node = "n9".into();
        refused(&stranger, &key(&stranger), "not registered");
        let mut elsewhere = ok.clone();
        elsewhere.node_ip = "198.18.0.1".parse().unwrap();
        refused(&elsewhere, &key(&elsewhere), "the node says 198.18.0.12");
    }

    #[test]
    fn candidates_skip_taken_and_cover_all() {
        let p = pool();
        let taken: HashSet<IpNet> = [nth_block(&p, 1)].into();
        let c: Vec<IpNet> = candidates(&p, &taken, "node-a").collect();
        assert_eq!(c.len(), 3);
        assert!(!c.contains(&nth_block(&p, 1)));
        let other: Vec<IpNet> = candidates(&p, &HashSet::new(), "node-b").collect();
        assert_eq!(other.len(), 4);
    }
}
