//! nearhost IPAM: a pure allocator ([`allocator`]) over a [`Store`] (the embedded
//! [`FileStore`], or [`MemStore`] in tests), with ownership semantics in [`Ipam`].

pub mod allocator;
pub mod config;
pub mod error;
pub mod file_store;
pub mod ipam;
pub mod pool;
pub mod store;

pub use config::{IpamConfig, Range, RangeSet, RouteSpec};
pub use error::{IpamError, Result};
pub use file_store::FileStore;
pub use ipam::{Ipam, Lease};
pub use store::{MemStore, Owner, Reservation, State, Store};
