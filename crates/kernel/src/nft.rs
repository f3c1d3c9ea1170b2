//! nftables, through the `nft` tool (its netlink protocol is large and the tool
//! applies a script as one atomic transaction). Acts in the namespace of the
//! calling thread: the child process inherits it.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{KernelError, Result};

/// Applies `script` (nft syntax) atomically.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::io("run nft (is the nftables package installed?)", e))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| KernelError::io("write nft script", e))?;
    let out = child.wait_with_output().map_err(|e| KernelError::io("wait for nft", e))?;
    if !out.status.success() {
        return Err(KernelError::Unsupported(format!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs `nft -j ARGS` and returns its JSON output; `Ok(None)` when the object
/// does not exist.
pub fn list_json(args: &[&str]) -> Result<Option<String>> {
    let out = Command::new("nft")
        .arg("-j")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelError::io("run nft (is the nftables package installed?)", e))?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") || err.contains("does not exist") {
        return Ok(None);
    }
    Err(KernelError::Unsupported(format!("nft {}: {}", args.join(" "), err.trim())))
}
