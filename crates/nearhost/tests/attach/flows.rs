//! Two Docker containers on one network: they reach each other and the
//! gateway; detach, `ls` once a container is gone, `gc`.

use serde_json::Value;

use crate::attach_support::*;
use crate::docker::{engine_host_and_network, Dockerd};

fn ip_of(attachment: &Value) -> String {
    attachment["addresses"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no address: {attachment}"))
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// The row of `ls --json` for container `name`.
fn row(cli: &Cli, name: &str) -> Value {
    let listed = cli.json(&["ls"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["target"]["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
}

/// Attaches web1 (by name) and web2 (by ID prefix) to `net`, checks
/// addresses and reachability from inside the containers.
fn attach_two(d: &Dockerd, cli: &Cli, net: &str, gateway: &str) -> (String, String) {
    d.run("web1");
    let web2 = d.run("web2");
    let a1 = cli.json(&["attach", "web1", "--net", net]);
    let a2 = cli.json(&["attach", &web2.id[..12], "--net", net]);
    assert_eq!(
        (a1["target"]["kind"].as_str(), a1["target"]["name"].as_str()),
        (Some("docker"), Some("web1"))
    );
    assert_eq!(
        a2["target"]["containerId"],
        web2.id.as_str(),
        "the CNI container ID is Docker's full ID"
    );
    assert_eq!(a2["target"]["name"], "web2");
    let (ip1, ip2) = (ip_of(&a1), ip_of(&a2));
    let inside = d.addrs("web1");
    assert!(
        inside.contains("eth1") && inside.contains(&format!("{ip1}/24")),
        "web1 has no {ip1} on eth1: {inside}"
    );
    assert!(d.ping("web1", &ip2), "web1 cannot reach web2 over {net}");
    assert!(d.ping("web2", &ip1), "web2 cannot reach web1 over {net}");
    assert!(d.ping("web2", gateway), "web2 cannot reach the gateway {gateway}");
    assert_eq!(row(cli, "web1")["status"], "attached");
    (ip1, ip2)
}

#[test]
fn docker_containers_over_macvlan() {
    let (d, h, cli) = engine_host_and_network(90, "fast", "macvlan", 90, &["--master", "eth0"]);
    let (ip1, ip2) = attach_two(&d, &cli, "fast", "198.18.90.1");
    assert!(h.gw.ping(&ip1), "the gateway cannot reach web1");

    let out = cli.run(&["detach", "web1", "--net", "fast"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "detached web1 (docker {}) from network fast (interface eth1, released {ip1}/24)",
            &row_id(&d, "web1")[..12]
        )
    );
    assert!(!d.addrs("web1").contains("eth1"), "detach left eth1 in web1");
    assert_eq!(h.reservations("fast"), vec![ip2.clone()]);

    d.must(&["rm", "-f", "web2"]);
    let gone = row(&cli, "web2");
    assert_eq!(
        (gone["status"].as_str(), gone["reason"].as_str()),
        (Some("gone"), Some("container removed"))
    );
    let text = cli.run(&["ls"]).stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("web2 (docker "))
        .unwrap_or_else(|| panic!("web2 not in:\n{text}"));
    for part in [
        "fast",
        "eth1",
        &format!("{ip2}/24"),
        "macvlan",
        "gone: container removed (`nearhost gc` cleans it up)",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    let report = cli.json(&["gc"]);
    assert_eq!(report["removed"][0]["target"]["name"], "web2", "{report}");
    assert!(h.reservations("fast").is_empty(), "gc did not release {ip2}");
    assert!(cli.records().is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

fn row_id(d: &Dockerd, name: &str) -> String {
    d.must(&["inspect", "-f", "{{.Id}}", name])
}

#[test]
fn docker_containers_over_bridge() {
    let (d, h, cli) = engine_host_and_network(91, "br", "bridge", 191, &[]);
    let (ip1, _ip2) = attach_two(&d, &cli, "br", "198.18.191.1");
    assert!(h.ns.ping(&ip1), "the host cannot reach web1 through the bridge");

    // A stopped container's namespace is gone with it.
    d.must(&["kill", "web1"]);
    let gone = row(&cli, "web1");
    assert_eq!(
        (gone["status"].as_str(), gone["reason"].as_str()),
        (Some("gone"), Some("container exited"))
    );
    assert_eq!(row(&cli, "web2")["status"], "attached");
    let report = cli.json(&["gc"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(h.reservations("br").len(), 1);

    // Detach works by name even after the container was removed.
    d.must(&["rm", "-f", "web2"]);
    cli.json(&["detach", "web2", "--net", "br"]);
    assert!(h.reservations("br").is_empty());
    assert!(cli.records().is_empty());
    // The veth's host end goes with the container's namespace, which the
    // kernel frees asynchronously (cleanup_net) once the container's last
    // process is gone: wait for it rather than race it.
    let only_bridge = || h.ns.link_names() == ["eth0", "nh0"];
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(5), only_bridge),
        "veth host ends must be gone: {:?}",
        h.ns.link_names()
    );
}
