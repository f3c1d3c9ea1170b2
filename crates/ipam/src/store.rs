//! Where reservations live. The allocator never touches storage; the [`Store`]
//! runs one read-modify-write transaction at a time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Who holds an address: the CNI attachment key (network, container ID,
/// interface name), and who made the attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    /// The network (CNI config `name`): a pool's store is shared by every
    /// network drawing from the pool. Empty in reservations made before it
    /// was recorded; those belong to any network.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Made by `nearhost attach`, whose own `gc` releases it: a runtime's GC
    /// of the same network lists only the runtime's attachments.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach: bool,
}

impl Owner {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Owner {
            container_id: container_id.into(),
            ifname: ifname.into(),
            network: String::new(),
            attach: false,
        }
    }

    /// The same attachment on `network`.
    pub fn on(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// The same attachment, made by `nearhost attach` when `attach`.
    pub fn by_attach(mut self, attach: bool) -> Self {
        self.attach = attach;
        self
    }

    /// This reservation holder is the attachment `asked` (DEL, CHECK, a
    /// repeated ADD): same container and interface, same network unless the
    /// reservation predates networks being recorded.
    pub fn holds(&self, asked: &Owner) -> bool {
        self.container_id == asked.container_id
            && self.ifname == asked.ifname
            && (self.network.is_empty() || self.network == asked.network)
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
    /// Cluster pools only: until when (boot clock, milliseconds) etcd has
    /// confirmed that `blocks` are this node's; written by the agent on every
    /// keep-alive of its blocks lease. No address is handed out of the blocks
    /// after it: by then another node may have claimed them.
    #[serde(default, rename = "blocksHeldUntil", skip_serializing_if = "is_zero")]
    pub blocks_held_until: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Milliseconds since boot, suspend included (`CLOCK_BOOTTIME`): one clock for
/// every process on the host, which no one can set and which keeps running
/// while the host sleeps — as the etcd lease it is compared with does.
pub fn boot_clock_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into `ts`, which outlives the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME is always available on Linux");
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
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
