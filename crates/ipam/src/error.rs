use std::net::IpAddr;

/// IPAM failures. Each names the field, address or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Bad configuration: `field` is a path such as `ipam.ranges[0][1].rangeStart`.
    #[error("{field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("no free address left in {ranges} (all {in_use} usable addresses are reserved)")]
    Exhausted { ranges: String, in_use: usize },
    #[error("requested address {ip} is already reserved by container {owner}")]
    StaticTaken { ip: IpAddr, owner: String },
    #[error("requested address {ip} is not in any configured range ({ranges})")]
    StaticOutside { ip: IpAddr, ranges: String },
    #[error("requested address {ip} is excluded or is the gateway/network address")]
    StaticReserved { ip: IpAddr },
    #[error("timed out after {seconds} s waiting for the IPAM lock {path}; another plugin process holds it")]
    LockTimeout { path: String, seconds: u64 },
    #[error("IPAM state file {path} is unreadable: {reason}; `{hint}` rebuilds it from the runtimes' result cache and nearhost attach's records")]
    Corrupt { path: String, reason: String, hint: String },
    /// The node has no address blocks yet (cluster pool) or the agent is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// The node agent has not confirmed recently enough that the node's
    /// blocks are still its own.
    #[error("{0}")]
    Unconfirmed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl IpamError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        IpamError::Io { what: what.into(), source }
    }

    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        IpamError::InvalidConfig { field: field.into(), reason: reason.into() }
    }
}

pub type Result<T, E = IpamError> = std::result::Result<T, E>;
