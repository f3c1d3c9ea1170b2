//! Running processes inside the lab's namespaces: the nearhost binary itself
//! (bench servers and clients), entered with `setns` before `exec`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nearhost_kernel::process::{self, Process};
use nearhost_kernel::{netns, NetNs};

use crate::error::{LabError, Result};

/// The running nearhost binary (the lab re-executes it for bench processes).
pub fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| LabError::io("find the nearhost binary", e))
}

/// `nearhost ARGS` inside namespace `ns`, stdout piped. `detach` starts it in
/// its own session so it outlives this process (servers of `lab up`).
pub fn spawn_in(ns: &str, args: &[String], detach: bool) -> Result<Child> {
    let handle = NetNs::open(netns::named_path(ns))
        .map_err(LabError::kernel(format!("open namespace {ns}")))?;
    let mut cmd = Command::new(self_exe()?);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    process::spawn_in(&handle, &mut cmd, detach)
        .map_err(|e| LabError::io(format!("start nearhost {} in {ns}", args.join(" ")), e))
}

/// Stops a process the lab started (SIGTERM, SIGKILL after half a second);
/// a PID that now names another process is left alone.
pub fn stop(p: &Process) {
    p.terminate(Duration::from_millis(500));
}
