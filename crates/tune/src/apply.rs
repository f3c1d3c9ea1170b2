//! Applying a plan and reverting it exactly. Before the first write, the
//! original value of every file the plan changes is saved (one state file,
//! written atomically through nearhost-state), so a crash mid-apply still
//! leaves what `revert` needs. A write the kernel refuses undoes this run's
//! writes. A second `apply` keeps the first originals, so `revert` always
//! returns the host to what it was before nearhost touched it, byte for
//! byte as the kernel prints it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{Change, Plan, Profile};
use crate::Error;

/// The state file on a real host.
pub const DEFAULT_STATE: &str = "/var/lib/nearhost/tune.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// The profile last applied.
    pub profile: Option<Profile>,
    pub writes: Vec<SavedWrite>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedWrite {
    pub what: String,
    /// Under the root.
    pub path: String,
    /// The value before nearhost's first write, as the kernel printed it.
    pub original: String,
    /// The value nearhost wrote last.
    pub applied: String,
}

/// One saved setting now: `current` differs from `applied` when something
/// else changed it since.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub what: String,
    pub path: String,
    pub original: String,
    pub applied: String,
    pub current: Option<String>,
    /// `current` means what nearhost applied ([`same`]).
    pub holds: bool,
}

/// Whether two values of the file at `path` mean the same: CPU masks and
/// lists as sets (the kernel prints masks in its own width: `3` for
/// `00000003`), other values word by word (`ip_local_port_range` prints a
/// tab).
pub fn same(path: &str, a: &str, b: &str) -> bool {
    use crate::CpuSet;
    if path.ends_with("_cpus") {
        CpuSet::parse_mask(a).ok() == CpuSet::parse_mask(b).ok()
    } else if path.ends_with("_list") {
        CpuSet::parse_list(a).ok() == CpuSet::parse_list(b).ok()
    } else {
        a.split_whitespace().eq(b.split_whitespace())
    }
}

fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn read_value(root: &Path, path: &str) -> Result<String, Error> {
    let p = root.join(path);
    std::fs::read_to_string(&p)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| Error::io(format!("read {}", p.display()), e))
}

fn write_value(root: &Path, path: &str, value: &str) -> Result<(), Error> {
    let p = root.join(path);
    std::fs::write(&p, format!("{value}\n")).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc_eio()) && path.starts_with("proc/irq/") {
            " (a kernel-managed IRQ's affinity cannot be changed)"
        } else {
            ""
        };
        Error::Refused(format!("writing {value:?} to {}: {e}{hint}", p.display()))
    })
}

const fn libc_eio() -> i32 {
    5
}

fn load(state: &Path) -> Result<Saved, Error> {
    Ok(nearhost_state::read_json::<Saved>(state)?.unwrap_or_default())
}

/// Makes the plan's changes under `root`, saving the originals in `state`.
/// Returns the changes made (none when the host is already tuned).
pub fn apply(root: &Path, plan: &Plan, state: &Path) -> Result<Vec<Change>, Error> {
    if let Some(dir) = state.parent() {
        nearhost_state::create_dir(dir, 0o700)?;
    }
    let _lock = nearhost_state::lock(&lock_path(state), Duration::from_secs(10))?;
    let mut saved = load(state)?;
    let before = saved.clone();
    // Originals first: a crash after this still leaves what revert needs.
    let mut current = Vec::with_capacity(plan.changes.len());
    for c in &plan.changes {
        let now = read_value(root, &c.path)?;
        if !saved.writes.iter().any(|w| w.path == c.path) {
            saved.writes.push(SavedWrite {
                what: c.what.clone(),
                path: c.path.clone(),
                original: now.clone(),
                applied: now.clone(),
            });
        }
        current.push(now);
    }
    if plan.changes.is_empty() {
        return Ok(Vec::new());
    }
    nearhost_state::write_json(state, &saved)?;
    for (i, c) in plan.changes.iter().enumerate() {
        if let Err(e) = write_value(root, &c.path, &c.new) {
            // Undo this run's writes, newest first; keep the first saved state.
            for (done, old) in plan.changes[..i].iter().zip(&current).rev() {
                let _ = write_value(root, &done.path, old);
            }
            if before.writes.is_empty() {
                nearhost_state::remove(state)?;
            } else {
                nearhost_state::write_json(state, &before)?;
            }
            return Err(e);
        }
        if let Some(w) = saved.writes.iter_mut().find(|w| w.path == c.path) {
            w.applied = c.new.clone();
        }
    }
    saved.profile = Some(plan.profile);
    nearhost_state::write_json(state, &saved)?;
    Ok(plan.changes.clone())
}

/// Writes every saved original back, newest first, and removes the state.
/// Returns what was restored; a value the kernel refuses stays in the state
/// (and is the error), the others are restored.
pub fn revert(root: &Path, state: &Path) -> Result<Vec<SavedWrite>, Error> {
    let _lock = nearhost_state::lock(&lock_path(state), Duration::from_secs(10))?;
    let saved = load(state)?;
    let mut restored = Vec::new();
    let mut left = Vec::new();
    let mut first_error = None;
    for w in saved.writes.iter().rev() {
        match write_value(root, &w.path, &w.original) {
            Ok(()) => restored.push(w.clone()),
            Err(e) => {
                first_error.get_or_insert(e);
                left.push(w.clone());
            }
        }
    }
    match first_error {
        None => {
            if state.exists() {
                nearhost_state::remove(state)?;
            }
            Ok(restored)
        }
        Some(e) => {
            left.reverse();
            nearhost_state::write_json(state, &Saved { profile: saved.profile, writes: left })?;
            Err(e)
        }
    }
}

/// The saved settings and their values now.
pub fn status(root: &Path, state: &Path) -> Result<(Saved, Vec<Status>), Error> {
    let saved = load(state)?;
    let now = saved
        .writes
        .iter()
        .map(|w| {
            let current = read_value(root, &w.path).ok();
            Status {
                what: w.what.clone(),
                path: w.path.clone(),
                original: w.original.clone(),
                applied: w.applied.clone(),
                holds: current.as_deref().is_some_and(|c| same(&w.path, c, &w.applied)),
                current,
            }
        })
        .collect();
    Ok((saved, now))
}
