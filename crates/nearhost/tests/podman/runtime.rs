//! Podman as the CNI runtime: it reads the network list from its
//! configuration directory, executes `nearhost` from its plugin directory with
//! the CNI environment and config on stdin, parses our result into its own
//! view of the container (`podman inspect`), and calls DEL when the container
//! stops or is removed.

use std::path::Path;

use serde_json::{json, Value};

use crate::engine::Podman;
use crate::images::IMAGE;
use crate::support::*;

/// Writes `NAME.conflist` (cniVersion 1.0.0, what Podman 4.3's libcni speaks)
/// with one nearhost plugin.
fn network(p: &Podman, name: &str, plugin: Value) {
    let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]});
    std::fs::write(
        p.net_dir().join(format!("{name}.conflist")),
        serde_json::to_string_pretty(&list).unwrap(),
    )
    .unwrap();
}

/// Podman's own record of the container's address on `network`.
fn podman_ip(p: &Podman, name: &str, network: &str, field: &str) -> String {
    p.must(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").{field}}}}}"),
        name,
    ])
}

#[test]
fn podman_runs_containers_on_a_nearhost_macvlan_network() {
    let p = Podman::start(70);
    let h = &p.host;
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(), "ranges": [
        [{"subnet": "198.18.70.0/24", "rangeStart": h.v4(100), "rangeEnd": h.v4(199), "gateway": h.v4(1)}],
        [{"subnet": "2001:2:70::/64", "rangeStart": h.v6(0x100), "rangeEnd": h.v6(0x1ff), "gateway": h.v6(1)}]]});
    network(
        &p,
        "fast",
        json!({"type": "nearhost", "datapath": "macvlan", "master": "eth0", "ipam": ipam}),
    );
    let listed = p.must(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(listed.lines().any(|l| l == "fast nearhost"), "podman network ls: {listed}");

    p.run("a", "fast", &[]);
    p.run("b", "fast", &[]);
    let (a4, b4) =
        (podman_ip(&p, "a", "fast", "IPAddress"), podman_ip(&p, "b", "fast", "IPAddress"));
    let a6 = podman_ip(&p, "a", "fast", "GlobalIPv6Address");
    assert!(
        a4.starts_with("198.18.70.") && b4.starts_with("198.18.70.") && a4 != b4,
        "addresses from the range: {a4} {b4}"
    );
    assert!(a6.starts_with("2001:2:70::"), "IPv6 address from the range: {a6}");
    assert_eq!(podman_ip(&p, "a", "fast", "Gateway"), h.v4(1));
    let inside = p.addrs("a", "eth0");
    assert!(
        inside.contains(&format!("{a4}/24")) && inside.contains(&format!("{a6}/64")),
        "what Podman reports is in the container: {inside}"
    );
    let sandbox_name = p.sandbox("a").rsplit('/').next().unwrap().to_string();
    let eth0: Value = serde_json::from_str(&must(
        "ip",
        &["-n", &sandbox_name, "-j", "-d", "link", "show", "eth0"],
    ))
    .unwrap();
    assert_eq!(eth0[0]["linkinfo"]["info_kind"], "macvlan", "eth0 is a macvlan: {eth0}");
    assert!(p.ping("a", &b4), "a reaches b");
    assert!(p.ping("a", &h.v4(1)), "a reaches the gateway");
    assert!(p.ping("b", &h.v6(1)), "b reaches the IPv6 gateway");
    assert_eq!(h.reservations("fast").len(), 4, "two containers, two families");

    // Stop: Podman calls DEL and removes the namespace; start: a new ADD.
    let sandbox = p.sandbox("a");
    p.must(&["stop", "-t", "0", "a"]);
    assert_eq!(h.reservations("fast").len(), 2, "a's addresses released on stop");
    assert!(!Path::new(&sandbox).exists(), "Podman removed a's namespace {sandbox}");
    p.must(&["start", "a"]);
    let again = podman_ip(&p, "a", "fast", "IPAddress");
    assert!(p.addrs("a", "eth0").contains(&format!("{again}/24")));
    assert!(p.ping("a", &b4), "a reaches b after a restart");
    assert_eq!(h.reservations("fast").len(), 4);

    // Static address and MAC, as `podman run --ip --mac-address` sends them.
    p.run("s", "fast", &["--ip", &h.v4(150), "--mac-address", "02:00:c6:12:46:96"]);
    assert_eq!(podman_ip(&p, "s", "fast", "IPAddress"), h.v4(150));
    let s_link = p.exec("s", &["ip", "-o", "link", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&s_link.stdout).contains("02:00:c6:12:46:96"),
        "{}",
        String::from_utf8_lossy(&s_link.stdout)
    );
    assert!(p.ping("s", &b4), "s reaches b");
    let taken = p.try_run("s2", "fast", &["--ip", &h.v4(150)]);
    assert!(!taken.status.success(), "a second container cannot take {}", h.v4(150));
    let why = String::from_utf8_lossy(&taken.stderr);
    assert!(
        why.contains(&h.v4(150)) && why.contains("already"),
        "Podman passes our error on: {why}"
    );
    p.rm(&["s", "s2"]);
    assert_eq!(h.reservations("fast").len(), 4, "s's address released, nothing of s2 kept");

    let sandboxes = [p.sandbox("a"), p.sandbox("b")];
    p.rm(&["a", "b"]);
    assert!(
        h.reservations("fast").is_empty(),
        "rm released every address: {:?}",
        h.state_file("fast")
    );
    for s in sandboxes {
        assert!(!Path::new(&s).exists(), "Podman removed {s}");
    }
    let host_links: Vec<String> =
        h.ns.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect();
    assert_eq!(host_links, ["lo", "eth0"], "nothing left in the host namespace");
}

#[test]
fn podman_publishes_a_port_through_the_bridge_datapath() {
    let p = Podman::start(71);
    let h = &p.host;
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(),
        "ranges": [[{"subnet": "198.18.171.0/24", "gateway": "198.18.171.1"}]], "routes": [{"dst": "0.0.0.0/0"}]});
    network(
        &p,
        "web",
        json!({"type": "nearhost", "datapath": "bridge", "bridge": "nhp0", "isGateway": true, "ipMasq": true,
        "capabilities": {"portMappings": true}, "ipam": ipam}),
    );

    let page = "served by busybox httpd in a Podman container";
    let script = format!(
        "mkdir -p /www && echo '{page}' > /www/index.html && exec httpd -f -p 8080 -h /www"
    );
    p.must(&[
        "run", "-d", "--name", "srv", "--network", "web", "-p", "18080:8080", IMAGE, "sh", "-c",
        &script,
    ]);
    let ip = podman_ip(&p, "srv", "web", "IPAddress");
    assert!(ip.starts_with("198.18.171."), "{ip}");

    // From outside the host (its gateway's namespace), to the host's address.
    let url = format!("http://{}:18080/index.html", h.v4(2));
    let fetch = || h.gw.http_get(&url);
    assert!(
        eventually(std::time::Duration::from_secs(5), || fetch().is_some()),
        "{url} never answered"
    );
    assert_eq!(fetch().as_deref(), Some(page));
    assert!(p.ping("srv", &h.v4(1)), "the container reaches the host's gateway (masqueraded)");

    p.rm(&["srv"]);
    assert!(h.reservations("web").is_empty());
    assert_eq!(fetch(), None, "the mapping is gone with the container");
    let rules =
        String::from_utf8_lossy(&h.ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(!rules.contains("18080"), "no rule for the port is left: {rules}");
}
