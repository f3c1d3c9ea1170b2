//! Helpers for the suites that drive `nearhost lab` and `nearhost demo`.

use std::process::{Command, Stdio};

use super::{bin, must, run};

/// The lab's namespaces that exist now.
pub fn lab_namespaces() -> Vec<String> {
    let out = must("ip", &["netns", "list"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("nhlab-"))
        .map(str::to_string)
        .collect()
}

/// Bench processes the lab started (servers, clients) that are still alive.
pub fn lab_processes() -> Vec<String> {
    let out = run("ps", &["-eo", "pid,args"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(bin()) && l.contains(" bench "))
        .map(str::to_string)
        .collect()
}

/// Removes a lab left by a failed test, so the next one starts clean.
pub struct CleanLab;

impl Drop for CleanLab {
    fn drop(&mut self) {
        let _ = run(bin(), &["lab", "down"]);
    }
}

/// Runs the nearhost CLI.
pub fn nearhost(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("run nearhost")
}
