//! Where reservations live. The allocator never touches storage; the [`Store`]
//! runs one read-modify-write transaction at a time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Who holds an address: the CNI attachment key (container ID + interface name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Owner { container_id: container_id.into(), ifname: ifname.into() }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    #[serde(flatten)]
    pub owner: Owner,
    /// Unix seconds at reservation, for operators reading the file.
    #[serde(default)]
    pub since: u64,
}

/// Everything one network's IPAM remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub reservations: BTreeMap<IpAddr, Reservation>,
    /// Round-robin cursor per range set (keyed by [`crate::RangeSet::id`]).
    #[serde(default, rename = "lastReserved")]
    pub last_reserved: BTreeMap<String, IpAddr>,
    /// Cluster pools only: the address blocks this node holds, written by the
    /// node agent under the same lock the plugin allocates under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<ipnet::IpNet>,
}

/// One-transaction-at-a-time access to a network's [`State`].
pub trait Store {
    /// Runs `f` on the state under an exclusive lock. When `f` succeeds and the
    /// state changed, the new state is stored atomically; when `f` fails, nothing
    /// is stored.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T>;

    /// Reads the state (under the lock, so never half-written).
    fn read(&self) -> Result<State> {
        self.update(|s| Ok(s.clone()))
    }
}

/// An in-memory store, for unit tests of everything above the store.
#[derive(Default)]
pub struct MemStore {
    state: Mutex<State>,
}

impl Store for MemStore {
    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut work = guard.clone();
        let out = f(&mut work)?;
        *guard = work;
        Ok(out)
    }
}
