//! The quick start of docs/attach.md, run line by line exactly as written —
//! in a test host namespace, against the test's dockerd (DOCKER_HOST), with
//! nearhost's directories in a temporary directory (NEARHOST_NET_DIR,
//! NEARHOST_STATE_DIR) and the busybox image imported under its Hub name.

use std::process::{Command, Stdio};

use crate::attach_support::*;
use crate::docker::{Dockerd, IMAGE};
use crate::support::*;

const MARKER: &str =
    "<!-- quick start: crates/nearhost/tests/attach/quick_start.rs runs this block as written -->";

/// The command lines of the fenced block after the marker.
fn quick_start_lines() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/attach.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let after = doc
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("docs/attach.md lost its quick-start marker"))
        .1;
    let block = after.split("```").nth(1).expect("a fenced block after the marker");
    block
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_docker_quick_start_works_as_written() {
    let lines = quick_start_lines();
    assert!(lines.len() >= 3, "the quick start should be run / attach / reach: {lines:?}");
    let d = Dockerd::start();
    d.import_busybox(IMAGE);
    d.must(&["tag", IMAGE, "busybox:latest"]);
    let h = Host::new(92);
    let cli = Cli::new(&h.ns);
    // `nearhost` and `docker` on PATH are the ones under test.
    let bin_dir = cli.dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin(), bin_dir.join("nearhost")).unwrap();
    std::os::unix::fs::symlink(
        if std::path::Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" },
        bin_dir.join("docker"),
    )
    .unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut outputs = Vec::new();
    for line in &lines {
        let out = Command::new("ip")
            .args(["netns", "exec", &h.ns.name, "sh", "-c", line])
            .env("PATH", &path)
            .env("DOCKER_HOST", &d.host)
            .env("DOCKER_CONFIG", d.dir().join("cli"))
            .env("NEARHOST_NET_DIR", cli.net_dir())
            .env("NEARHOST_STATE_DIR", cli.state_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "quick-start line `{line}` failed:\n{text}");
        outputs.push(text);
    }
    let attach =
        lines.iter().position(|l| l.starts_with("nearhost attach")).expect("an attach line");
    assert!(
        outputs[attach].contains("address    198.18.0.2/24"),
        "the doc promises 198.18.0.2: {}",
        outputs[attach]
    );
    // Nothing of it outside the temporary directories: IPAM state is there too.
    assert_eq!(
        std::fs::read_dir(cli.state_dir()).unwrap().count(),
        2,
        "attachments/ and the network's IPAM dir"
    );
    cli.env("DOCKER_HOST", &d.host).json(&["detach", "web", "--net", "demo"]);
}
