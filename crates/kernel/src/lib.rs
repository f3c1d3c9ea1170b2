//! nearhost's kernel layer: the only code that talks to the kernel.
//!
//! Typed requests with no policy in them: which link to create, with which
//! options, is decided by the datapath drivers above.

pub mod addr;
pub mod announce;
pub mod bpf;
pub mod error;
pub mod link;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod process;
pub mod route;
pub mod route_events;
pub mod sriov;
pub mod sysctl;
pub mod sysfs;

pub use error::{KernelError, Result};
pub use netlink::Netlink;
pub use netns::NetNs;
