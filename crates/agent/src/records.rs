//! What nearhost keeps in etcd, and where. Every key lives under `/nearhost/`:
//!
//! | key | value | lifetime |
//! | --- | --- | --- |
//! | `/nearhost/pools/NAME` | [`PoolRecord`] | until `pool rm` |
//! | `/nearhost/meta/pools` | a counter bumped by every pool change | forever |
//! | `/nearhost/blocks/POOL/BLOCK` | [`BlockRecord`] (BLOCK with `/` as `_`) | the claiming node's lease |
//! | `/nearhost/nodes/NAME` | [`NodeRecord`] | the node's lease |

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every key's prefix.
pub const ROOT: &str = "/nearhost/";
pub const POOLS: &str = "/nearhost/pools/";
pub const POOLS_GUARD: &str = "/nearhost/meta/pools";
pub const BLOCKS: &str = "/nearhost/blocks/";
pub const NODES: &str = "/nearhost/nodes/";

pub fn pool_key(name: &str) -> String {
    format!("{POOLS}{name}")
}

pub fn blocks_of(pool: &str) -> String {
    format!("{BLOCKS}{pool}/")
}

pub fn block_key(pool: &str, block: &IpNet) -> String {
    format!("{BLOCKS}{pool}/{}", block.to_string().replace('/', "_"))
}

pub fn node_key(name: &str) -> String {
    format!("{NODES}{name}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub name: String,
    pub subnet: IpNet,
    #[serde(rename = "blockPrefix")]
    pub block_prefix: u8,
}

impl PoolRecord {
    pub fn block_count(&self) -> u128 {
        1u128 << (self.block_prefix - self.subnet.prefix_len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub pool: String,
    pub block: IpNet,
    pub node: String,
    #[serde(rename = "nodeIP")]
    pub node_ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub ip: IpAddr,
    pub mode: String,
    #[serde(rename = "startedUnix")]
    pub started_unix: u64,
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// Pool and block names appear in keys: letters, digits, `- _ .`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let b: IpNet = "198.18.64.0/26".parse().unwrap();
        assert_eq!(block_key("p1", &b), "/nearhost/blocks/p1/198.18.64.0_26");
        assert!(block_key("p1", &b).starts_with(&blocks_of("p1")));
        assert!(valid_name("pod-net_1.a"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        let p = PoolRecord {
            name: "p".into(),
            subnet: "198.18.64.0/18".parse().unwrap(),
            block_prefix: 26,
        };
        assert_eq!(p.block_count(), 256);
        let back: PoolRecord = decode(&encode(&p)).unwrap();
        assert_eq!(back, p);
    }
}
