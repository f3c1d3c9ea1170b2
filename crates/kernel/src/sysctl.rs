//! procfs sysctls. `/proc/sys/net` shows the namespace of the calling thread, so
//! callers write them from a thread inside the target namespace
//! ([`crate::netns::run_in`]).

use std::path::PathBuf;

use crate::error::{KernelError, Result};

/// Builds `/proc/sys/a/b/c` from components, so an interface name containing a
/// dot (`eth0.100`) stays one component.
pub fn path(components: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for c in components {
        p.push(c);
    }
    p
}

/// Writes a sysctl in the calling thread's namespace.
pub fn write(components: &[&str], value: &str) -> Result<()> {
    let p = path(components);
    std::fs::write(&p, value)
        .map_err(|e| KernelError::io(format!("write {value:?} to {}", p.display()), e))
}

/// The entries under a sysctl directory (e.g. the interfaces of
/// `net.ipv6.conf`) in the calling thread's namespace.
pub fn children(components: &[&str]) -> Result<Vec<String>> {
    let p = path(components);
    let rd =
        std::fs::read_dir(&p).map_err(|e| KernelError::io(format!("list {}", p.display()), e))?;
    Ok(rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
}

/// Reads a sysctl in the calling thread's namespace.
pub fn read(components: &[&str]) -> Result<String> {
    let p = path(components);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| KernelError::io(format!("read {}", p.display()), e))
}

/// Writes a sysctl only when its value differs (writes to some keys are not free:
/// `forwarding` resets per-interface settings on every write).
pub fn ensure(components: &[&str], value: &str) -> Result<()> {
    if read(components).ok().as_deref() == Some(value) {
        return Ok(());
    }
    write(components, value)
}
