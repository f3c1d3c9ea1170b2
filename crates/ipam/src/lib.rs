//! nearhost IPAM: a pure allocator ([`allocator`]) over a [`Store`] (the embedded
//! [`FileStore`], or [`MemStore`] in tests), with ownership semantics in
//! [`Ipam`] ([`leases`]), and the client of the node agent for cluster pools
//! ([`agent_client`]).

pub mod agent_client;
pub mod allocator;
pub mod config;
pub mod error;
pub mod file_store;
pub mod leases;
pub mod store;

pub use config::{IpamConfig, Range, RangeSet, RouteSpec};
pub use error::{IpamError, Result};
pub use file_store::{validate_network_name, FileStore};
pub use leases::{Ipam, Lease};
pub use store::{boot_clock_ms, MemStore, Owner, Reservation, State, Store};
