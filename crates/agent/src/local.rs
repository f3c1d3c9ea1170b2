//! The node's side of a pool: the local IPAM store the CNI plugin allocates
//! from (`DATA_DIR/pool-NAME/state.json`). The agent records its blocks there,
//! under the store's lock, and reads how many addresses each block has in use.

use std::path::Path;

use ipnet::IpNet;
use nearhost_ipam::leases::{blocks_as_sets, reserved_in};
use nearhost_ipam::{agent_client, FileStore, Ipam, Store};

use crate::error::Result;

pub type PoolStore = Ipam<FileStore>;

pub fn open(data_dir: &Path, pool_name: &str) -> Result<PoolStore> {
    Ok(Ipam::new(FileStore::new(data_dir, &agent_client::store_name(pool_name))?))
}

/// The blocks recorded by the last run (to take back after a restart).
pub fn recorded_blocks(store: &PoolStore) -> Result<Vec<IpNet>> {
    Ok(store.state()?.blocks)
}

/// Records the node's blocks of this pool, and until when (boot clock, ms)
/// etcd has confirmed they are the node's.
pub fn set_blocks(store: &PoolStore, blocks: &[IpNet], held_until: u64) -> Result<()> {
    let mut sorted = blocks.to_vec();
    sorted.sort();
    sorted.dedup();
    store.store().update(|s| {
        s.blocks = sorted;
        s.blocks_held_until = held_until;
        Ok(())
    })?;
    Ok(())
}

/// The addresses reserved in `block` (containers that hold them).
pub fn reserved_addresses(store: &PoolStore, block: &IpNet) -> Result<Vec<std::net::IpAddr>> {
    Ok(store.state()?.reservations.keys().filter(|ip| block.contains(*ip)).copied().collect())
}

/// Removes `block` from the node's blocks if no address in it is reserved —
/// checked and done under the plugin's lock, so no ADD can take an address
/// from it in between. True when removed.
pub fn drop_if_empty(store: &PoolStore, block: &IpNet) -> Result<bool> {
    Ok(store.store().update(|s| {
        if reserved_in(s, block) > 0 {
            return Ok(false);
        }
        s.blocks.retain(|b| b != block);
        Ok(true)
    })?)
}

/// Usage: (addresses reserved per block, free addresses across all blocks).
pub fn usage(store: &PoolStore) -> Result<(Vec<(IpNet, usize)>, usize)> {
    let s = store.state()?;
    let per_block: Vec<(IpNet, usize)> =
        s.blocks.iter().map(|b| (*b, reserved_in(&s, b))).collect();
    let capacity: usize = blocks_as_sets(&s.blocks)
        .iter()
        .flat_map(|set| set.ranges.iter())
        .map(|r| usable(r.start, r.end).saturating_sub(1)) // minus the gateway
        .sum();
    let used: usize = per_block.iter().map(|(_, n)| n).sum();
    Ok((per_block, capacity.saturating_sub(used)))
}

/// Addresses one block gives containers (its gateway excluded).
pub fn capacity(block: &IpNet) -> usize {
    let (start, end) = nearhost_ipam::config::usable_bounds(block);
    usable(start, end).saturating_sub(1)
}

fn usable(start: std::net::IpAddr, end: std::net::IpAddr) -> usize {
    let o = |ip| nearhost_ipam::config::ord(ip);
    usize::try_from(o(end) - o(start) + 1).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearhost_ipam::Owner;

    #[test]
    fn blocks_usage_and_dropping() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), "p").unwrap();
        let a: IpNet = "198.18.64.0/29".parse().unwrap();
        let b: IpNet = "198.18.64.8/29".parse().unwrap();
        set_blocks(&s, &[b, a], nearhost_ipam::boot_clock_ms() + 60_000).unwrap();
        assert_eq!(recorded_blocks(&s).unwrap(), vec![a, b]);
        let (_, free) = usage(&s).unwrap();
        assert_eq!(free, 2 * 5, "each /29: 6 usable minus the gateway");
        s.allocate_in_blocks(&[], &Owner::new("c", "eth0"), &[]).unwrap();
        let (per, free) = usage(&s).unwrap();
        assert_eq!(free, 9);
        assert_eq!(per.iter().map(|(_, n)| n).sum::<usize>(), 1);
        let used = per.iter().find(|(_, n)| *n == 1).unwrap().0;
        let idle = if used == a { b } else { a };
        assert!(!drop_if_empty(&s, &used).unwrap());
        assert!(drop_if_empty(&s, &idle).unwrap());
        assert_eq!(recorded_blocks(&s).unwrap(), vec![used]);
    }
}
