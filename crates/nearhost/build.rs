//! Tells the binary which commit it was built from (`nearhost --version`):
//! from git when the tree is a checkout, else from `COMMIT`, which `git
//! archive` fills in (export-subst, see .gitattributes); else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let from_git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let from_archive =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("COMMIT"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    let commit = from_git.or(from_archive).unwrap_or_else(|| "unknown".into());
    let short = commit.get(..12).unwrap_or(&commit);
    println!("cargo:rustc-env=NEARHOST_COMMIT={short}");
    println!("cargo:rerun-if-changed=COMMIT");
    // A new commit or checkout appends to git's HEAD log.
    let log = root.join(".git/logs/HEAD");
    if log.exists() {
        println!("cargo:rerun-if-changed={}", log.display());
    }
}
