//! `nearhost attach` with Podman containers: found by name and by ID through
//! `podman container inspect`, attached with the same datapath code as the CNI
//! path, refused when not running or unknown, listed as gone after `podman rm`
//! and collected by `gc`.

use crate::attach_support::*;
use crate::engine::Podman;
use crate::images::IMAGE;

#[test]
fn podman_containers_attach_by_name_and_id() {
    let p = Podman::start(72);
    let h = &p.host;
    // Podman through its CLI, pointed at the test's engine.
    let mut cli = Cli::new(&h.ns).without_env("CONTAINER_HOST");
    for (k, v) in p.env() {
        cli = cli.env(k, &v);
    }
    cli.net_create(h, "fast", "macvlan", 72, &["--master", "eth0"]);
    p.run("p1", "none", &[]);
    let id2 = p.run("p2", "none", &[]);

    let a = cli.json(&["attach", "p1", "--net", "fast"]);
    assert_eq!(
        (a["target"]["kind"].as_str(), a["target"]["name"].as_str()),
        (Some("podman"), Some("p1")),
        "{a}"
    );
    assert_eq!(a["target"]["engine"]["via"], "cli");
    let b = cli.json(&["attach", &id2, "--net", "fast"]);
    assert_eq!(b["target"]["containerId"].as_str(), Some(id2.as_str()), "{b}");
    let (ip1, ip2) = (h.v4(100), h.v4(101));
    assert!(p.addrs("p1", "eth1").contains(&format!("{ip1}/24")), "{}", p.addrs("p1", "eth1"));
    assert!(p.addrs("p2", "eth1").contains(&format!("{ip2}/24")), "{}", p.addrs("p2", "eth1"));
    assert!(p.ping("p1", &ip2), "p1 reaches p2");
    assert!(p.ping("p2", &h.v4(1)), "p2 reaches the gateway");

    cli.fails(&["attach", "p1", "--net", "fast"]).expect_err(
        "already_attached",
        &["p1 is already attached to network \"fast\" (interface eth1)"],
    );
    cli.fails(&["attach", "nosuch", "--net", "fast"])
        .expect_err("target_not_found", &["no container \"nosuch\" in Podman"]);
    p.must(&["create", "--network", "none", "--name", "idle", IMAGE, "sleep", "3600"]);
    cli.fails(&["attach", "idle", "--net", "fast"]).expect_err(
        "not_running",
        &["container \"idle\" (Podman) is not running (status: created)"],
    );

    cli.json(&["detach", "p2", "--net", "fast"]);
    assert!(!p.exec("p2", &["ip", "link", "show", "eth1"]).status.success(), "eth1 left p2");
    assert_eq!(h.reservations("fast"), vec![ip1.clone()]);

    p.rm(&["p1", "p2", "idle"]);
    let rows = cli.json(&["ls"]);
    let row = &rows[0];
    assert_eq!(
        (row["status"].as_str(), row["reason"].as_str()),
        (Some("gone"), Some("container removed")),
        "{rows}"
    );
    cli.json(&["gc"]);
    assert!(h.reservations("fast").is_empty());
    assert!(cli.records().is_empty());
}
