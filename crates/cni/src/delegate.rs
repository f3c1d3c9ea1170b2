//! Delegation to another plugin on `CNI_PATH` (an IPAM plugin such as the
//! reference `host-local`), exactly as a runtime would call it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::env::{Command, Invocation};
use crate::error::{code, CniError, Result};

/// Finds plugin `name` in the invocation's `CNI_PATH`.
pub fn find(inv: &Invocation, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return Err(CniError::config("ipam.type", format!("{name:?} is not a plugin name")));
    }
    inv.path.iter().map(|dir| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        let dirs: Vec<String> = inv.path.iter().map(|d| d.display().to_string()).collect();
        CniError::config(
            "ipam.type",
            format!("no plugin {name:?} in CNI_PATH ({})", dirs.join(":")),
        )
    })
}

fn verb(c: Command) -> &'static str {
    match c {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Status => "STATUS",
        Command::Gc => "GC",
        Command::Version => "VERSION",
    }
}

/// Runs `name` with `command` and `stdin`; returns its parsed stdout (if any).
pub fn exec(inv: &Invocation, name: &str, command: Command, stdin: &[u8]) -> Result<Option<Value>> {
    let path = find(inv, name)?;
    let joined = std::env::join_paths(&inv.path).unwrap_or_default();
    let mut child = Process::new(&path)
        .env("CNI_COMMAND", verb(command))
        .env("CNI_CONTAINERID", &inv.container_id)
        .env("CNI_NETNS", &inv.netns)
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_ARGS", &inv.raw_args)
        .env("CNI_PATH", joined)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::DELEGATE_FAILED,
                format!("ipam plugin {}: cannot run: {e}", path.display()),
            )
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin that exits without reading stdin is answered by its exit status.
        let _ = pipe.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(code::DELEGATE_FAILED, format!("ipam plugin {name}: {e}")))?;
    let parsed: Option<Value> = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::new(
                code::DELEGATE_FAILED,
                format!("ipam plugin {name} printed invalid JSON: {e}"),
            )
        })?)
    };
    if out.status.success() {
        return Ok(parsed);
    }
    // Pass the delegate's own error on, marked as coming from it.
    let (c, msg) = match &parsed {
        Some(v) => (
            v.get("code")
                .and_then(Value::as_u64)
                .map(|c| c as u32)
                .unwrap_or(code::DELEGATE_FAILED),
            v.get("msg").and_then(Value::as_str).unwrap_or("failed").to_string(),
        ),
        None => (code::DELEGATE_FAILED, String::from_utf8_lossy(&out.stderr).trim().to_string()),
    };
    Err(CniError::new(c, format!("ipam plugin {name} ({}): {msg}", verb(command))))
}
