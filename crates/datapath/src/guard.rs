//! Rollback guards: whatever ADD creates is owned by a guard until ADD succeeds,
//! so every early return (`?`) undoes it — no error variable to forget to check.

use nearhost_kernel::{NetNs, Netlink};

/// Deletes a link on drop unless disarmed. It opens its own socket in the
/// link's namespace, so it needs no borrow of the caller's sockets.
pub struct LinkGuard {
    ns: Option<NetNs>,
    index: u32,
    what: String,
}

impl LinkGuard {
    pub fn new(ns: &NetNs, index: u32, what: impl Into<String>) -> Self {
        LinkGuard { ns: ns.try_clone().ok(), index, what: what.into() }
    }

    /// ADD succeeded: keep the link.
    pub fn disarm(mut self) {
        self.ns = None;
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let Some(ns) = self.ns.take() else { return };
        let result = Netlink::open_in(&ns).and_then(|mut nl| nl.delete_link(self.index));
        match result {
            Ok(()) => tracing::debug!("rolled back {}", self.what),
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!("rollback of {} failed: {e}", self.what),
        }
    }
}

/// Runs an undo action on drop unless disarmed (for non-link changes: routes,
/// neighbour entries, sysfs claims).
pub struct Undo<F: FnOnce()> {
    action: Option<F>,
}

impl<F: FnOnce()> Undo<F> {
    pub fn new(action: F) -> Self {
        Undo { action: Some(action) }
    }

    pub fn disarm(mut self) {
        self.action = None;
    }
}

impl<F: FnOnce()> Drop for Undo<F> {
    fn drop(&mut self) {
        if let Some(a) = self.action.take() {
            a();
        }
    }
}
