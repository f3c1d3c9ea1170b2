//! Running processes inside the lab's namespaces: the nearhost binary itself
//! (bench servers and clients), entered with `setns` before `exec`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nearhost_kernel::netns;

use crate::error::{LabError, Result};

/// The running nearhost binary (the lab re-executes it for bench processes).
pub fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| LabError::io("find the nearhost binary", e))
}

/// `nearhost ARGS` inside namespace `ns`, stdout piped. `detach` starts it in
/// its own session so it outlives this process (servers of `lab up`).
pub fn spawn_in(ns: &str, args: &[String], detach: bool) -> Result<Child> {
    let path = netns::named_path(ns);
    let file = File::open(&path).map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
    let fd = file.as_raw_fd();
    let mut cmd = Command::new(self_exe()?);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setns, setsid) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if detach && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| LabError::io(format!("start nearhost {} in {ns}", args.join(" ")), e))?;
    drop(file);
    Ok(child)
}

/// Sends SIGTERM, then SIGKILL after a moment, to `pid` (and SIGCONT in case it
/// was stopped). Gone already is fine.
pub fn stop_pid(pid: u32) {
    let pid = pid as i32;
    // SAFETY: kill(2) with a pid we started; errors (ESRCH) are ignored.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..20 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
