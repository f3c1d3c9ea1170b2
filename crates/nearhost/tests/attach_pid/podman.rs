//! Podman through its CLI (`podman container inspect`). Podman is not
//! installed here, so a stand-in script on PATH answers as podman does — the
//! JSON shape and the "no such container" exit — for a real process in its own
//! namespace; what is tested is nearhost's side: lookup, attach, liveness.

use std::os::unix::fs::PermissionsExt;

use crate::attach_support::*;
use crate::support::*;

const ID: &str = "5f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";

/// Writes a `podman` that knows `containers`: (name, running, pid).
fn fake_podman(dir: &std::path::Path, containers: &[(&str, bool, u32)]) {
    let mut cases = String::new();
    for (name, running, pid) in containers {
        let status = if *running { "running" } else { "exited" };
        cases += &format!(
            "  {name}|{ID}) echo '[{{\"Id\": \"{ID}\", \"Name\": \"{name}\", \"State\": {{\"Status\": \"{status}\", \"Running\": {running}, \"Pid\": {pid}}}}}]' ;;\n"
        );
    }
    let script = format!(
        "#!/bin/sh\n[ \"$1 $2 $3 $4 $5\" = \"container inspect --format json --\" ] || {{ echo \"unexpected: $*\" >&2; exit 2; }}\ncase \"$6\" in\n{cases}  *) echo \"Error: no such container $6\" >&2; exit 125 ;;\nesac\n"
    );
    let path = dir.join("podman");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn podman_containers_are_found_through_podman_inspect() {
    let h = Host::new(67);
    let bin_dir = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", bin_dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let cli = Cli::new(&h.ns).env("PATH", &path);
    cli.net_create(&h, "fast", "macvlan", 67, &["--master", "eth0"]);
    let ctr = Sleeper::new();
    fake_podman(bin_dir.path(), &[("pod1", true, ctr.pid()), ("idle", false, 0)]);

    let a = cli.json(&["attach", "pod1", "--net", "fast"]);
    assert_eq!((a["target"]["kind"].as_str(), a["target"]["name"].as_str(), a["target"]["containerId"].as_str()), (Some("podman"), Some("pod1"), Some(ID)));
    assert_eq!(a["target"]["engine"]["via"], "cli");
    let ns = netns_of_pid(ctr.pid());
    assert_eq!(ns.addrs("eth1"), vec!["198.18.67.100/24".to_string()]);
    cli.fails(&["attach", "idle", "--net", "fast"]).expect_err("not_running", &["container \"idle\" (Podman) is not running (status: exited)"]);
    cli.fails(&["attach", "nosuch", "--net", "fast"]).expect_err("target_not_found", &["no container \"nosuch\" in Podman ("]);

    // Removed from podman: gone, collected.
    fake_podman(bin_dir.path(), &[]);
    let row = &cli.json(&["ls"])[0];
    assert_eq!((row["status"].as_str(), row["reason"].as_str()), (Some("gone"), Some("container removed")));
    cli.json(&["gc"]);
    assert!(h.reservations("fast").is_empty());
    assert!(cli.records().is_empty());
}
