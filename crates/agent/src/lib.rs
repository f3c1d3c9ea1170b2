//! nearhost node agent: one per host. It holds an etcd session, claims address
//! blocks from cluster pools for its node (bound to its lease), records them in
//! the local IPAM store the CNI plugin allocates from, and programs routes (or
//! VXLAN entries) to every other node's blocks. Metrics on 127.0.0.1.

pub mod agent;
pub mod blocks;
pub mod error;
pub mod etcd;
pub mod local;
pub mod metrics;
pub mod pools;
pub mod records;
pub mod routes;
pub mod session;
pub mod socket;
pub mod watch;

pub use agent::{run, AgentConfig};
pub use error::{AgentError, Result};
pub use etcd::{Etcd, EtcdOptions};
pub use routes::Mode;
