use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach etcd at {endpoints} within {seconds} s: {detail}")]
    Unreachable { endpoints: String, seconds: u64, detail: String },
    #[error("etcd {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("pool {0:?} does not exist (create it with `nearhost pool create {0} --subnet CIDR`)")]
    UnknownPool(String),
    #[error("pool {name:?} already exists ({subnet})")]
    PoolExists { name: String, subnet: IpNet },
    #[error("pool {name:?} ({subnet}) overlaps pool {other:?} ({other_subnet})")]
    Overlap { name: String, subnet: IpNet, other: String, other_subnet: IpNet },
    #[error("pool {pool:?} is exhausted: all {total} blocks of {subnet} are claimed")]
    PoolExhausted { pool: String, subnet: IpNet, total: u128 },
    #[error("pool {pool:?} still has {count} claimed blocks (nodes: {nodes}); remove their containers first or use --force")]
    PoolInUse { pool: String, count: usize, nodes: String },
    #[error("block {block} of pool {pool:?} is held by node {holder} ({holder_ip}); this node's containers with addresses there now clash")]
    BlockStolen { pool: String, block: IpNet, holder: String, holder_ip: IpAddr },
    #[error("too many concurrent changes to {0}; try again")]
    Contention(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipam(#[from] nearhost_ipam::IpamError),
    #[error(transparent)]
    Datapath(#[from] nearhost_datapath::DatapathError),
}

impl AgentError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AgentError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
