//! Podman 5 with netavark (Debian 13's, in a trixie root): nearhost as a
//! netavark plugin. Podman runs `create` on `podman network create -d
//! nearhost`; netavark runs `setup` on run/start and `teardown` on stop/rm;
//! Podman allocates the addresses (host-local) and the plugin configures them.

use std::path::Path;

use serde_json::Value;

use crate::engine::Podman;
use crate::images::IMAGE;
use crate::support::*;

/// Podman's record of the container's address on `network`.
fn inspect(p: &Podman, name: &str, network: &str, field: &str) -> String {
    p.must(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").{field}}}}}"),
        name,
    ])
}

/// The MAC of `ifname` in the container, as the kernel reports it.
fn mac_in(p: &Podman, name: &str, ifname: &str) -> String {
    let out = p.in_sandbox(name, &["ip", "-j", "link", "show", ifname]);
    let link: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    link[0]["address"].as_str().unwrap_or_else(|| panic!("{name} has no {ifname}: {out:?}")).into()
}

fn host_links(p: &Podman) -> Vec<String> {
    p.host.ns.links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()
}

#[test]
fn podman_5_runs_containers_on_a_nearhost_macvlan_network() {
    let p = Podman::start_5(73);
    let h = &p.host;
    let plugins = p.must(&["info", "--format", "{{.Plugins.Network}}"]);
    assert!(plugins.contains("nearhost"), "Podman finds the plugin: {plugins}");
    p.must(&[
        "network",
        "create",
        "-d",
        "nearhost",
        "-o",
        "datapath=macvlan",
        "-o",
        "master=eth0",
        "--subnet",
        "198.18.73.0/24",
        "--gateway",
        &h.v4(1),
        "--ip-range",
        &format!("{}-{}", h.v4(100), h.v4(199)),
        "--subnet",
        "2001:2:73::/64",
        "--gateway",
        &h.v6(1),
        "--ip-range",
        &format!("{}-{}", h.v6(0x100), h.v6(0x1ff)),
        "fast",
    ]);
    let net: Value = serde_json::from_str(&p.must(&["network", "inspect", "fast"])).unwrap();
    assert_eq!(net[0]["options"]["mode"], "bridge", "create filled in the default mode: {net}");
    assert_eq!(net[0]["ipam_options"]["driver"], "host-local");

    p.run("a", "fast", &["--cap-add", "NET_RAW"]);
    p.run("b", "fast", &["--cap-add", "NET_RAW"]);
    let (a4, b4) = (inspect(&p, "a", "fast", "IPAddress"), inspect(&p, "b", "fast", "IPAddress"));
    let a6 = inspect(&p, "a", "fast", "GlobalIPv6Address");
    assert!(
        a4.starts_with("198.18.73.1") && b4.starts_with("198.18.73.1") && a4 != b4,
        "{a4} {b4}"
    );
    assert!(a6.starts_with("2001:2:73::1"), "{a6}");
    assert_eq!(inspect(&p, "a", "fast", "Gateway"), h.v4(1));
    assert_eq!(inspect(&p, "a", "fast", "IPv6Gateway"), h.v6(1));
    let inside = p.addrs("a", "eth0");
    assert!(
        inside.contains(&format!("{a4}/24")) && inside.contains(&format!("{a6}/64")),
        "what Podman reports is in the container: {inside}"
    );
    assert_eq!(
        inspect(&p, "a", "fast", "MacAddress"),
        mac_in(&p, "a", "eth0"),
        "the MAC Podman reports is eth0's"
    );
    let sandbox = p.sandbox("a");
    let eth0: Value = serde_json::from_slice(
        &p.in_sandbox("a", &["ip", "-j", "-d", "link", "show", "eth0"]).stdout,
    )
    .unwrap();
    assert_eq!(eth0[0]["linkinfo"]["info_kind"], "macvlan", "eth0 is a macvlan: {eth0}");
    assert!(p.ping("a", &b4), "a reaches b");
    assert!(p.ping("a", &h.v4(1)), "a reaches the gateway");
    assert!(p.ping("b", &h.v6(1)), "b reaches the IPv6 gateway");

    // stop: teardown removes the macvlan and Podman releases the address;
    // start: Podman allocates again (its allocator moves on, so the address
    // may differ) and setup configures whatever it handed out.
    p.must(&["stop", "-t", "0", "a"]);
    assert_eq!(host_links(&p), ["lo", "eth0"]);
    p.must(&["start", "a"]);
    let a4 = inspect(&p, "a", "fast", "IPAddress");
    assert!(a4.starts_with("198.18.73.1"), "{a4}");
    assert!(p.addrs("a", "eth0").contains(&format!("{a4}/24")), "the new address is on eth0");
    assert!(p.ping("a", &b4), "a reaches b after a restart");
    assert_ne!(p.sandbox("a"), sandbox, "a new namespace");

    // --ip and --mac-address, as netavark passes them in static_ips/static_mac.
    p.run(
        "s",
        "fast",
        &["--cap-add", "NET_RAW", "--ip", &h.v4(150), "--mac-address", "02:00:c6:12:49:96"],
    );
    assert_eq!(inspect(&p, "s", "fast", "IPAddress"), h.v4(150));
    assert_eq!(mac_in(&p, "s", "eth0"), "02:00:c6:12:49:96");
    assert_eq!(inspect(&p, "s", "fast", "MacAddress"), "02:00:c6:12:49:96");
    assert!(p.ping("s", &a4), "s reaches a");
    let taken = p.try_run("s2", "fast", &["--ip", &h.v4(150)]);
    assert!(!taken.status.success(), "a second container cannot take {}", h.v4(150));
    p.rm(&["s", "s2"]);
    // Released: the address can be taken again.
    p.run("s3", "fast", &["--ip", &h.v4(150)]);
    assert!(p.addrs("s3", "eth0").contains(&format!("{}/24", h.v4(150))));

    let sandboxes = [p.sandbox("a"), p.sandbox("b"), p.sandbox("s3")];
    p.rm(&["a", "b", "s3"]);
    for s in sandboxes {
        assert!(!Path::new(&s).exists(), "Podman removed {s}");
    }
    assert_eq!(host_links(&p), ["lo", "eth0"], "nothing left in the host namespace");
}

#[test]
fn podman_5_publishes_a_port_through_the_bridge_datapath() {
    let p = Podman::start_5(74);
    let h = &p.host;
    p.must(&[
        "network", "create", "-d", "nearhost", "-o", "datapath=bridge", "--subnet",
        "198.18.174.0/24", "web",
    ]);
    let net: Value = serde_json::from_str(&p.must(&["network", "inspect", "web"])).unwrap();
    let bridge = net[0]["options"]["bridge"].as_str().expect("create named the bridge").to_string();
    assert!(bridge.starts_with("nhp"), "{net}");
    assert_eq!(net[0]["options"]["ipMasq"], "true", "Podman's bridges masquerade: {net}");

    let page = "served by busybox httpd in a Podman 5 container";
    let script = format!(
        "mkdir -p /www && echo '{page}' > /www/index.html && exec httpd -f -p 8080 -h /www"
    );
    p.must(&[
        "run", "-d", "--name", "srv", "--network", "web", "-p", "18080:8080", IMAGE, "sh", "-c",
        &script,
    ]);
    let ip = inspect(&p, "srv", "web", "IPAddress");
    assert!(ip.starts_with("198.18.174."), "{ip}");
    assert_eq!(inspect(&p, "srv", "web", "Gateway"), "198.18.174.1");

    let url = format!("http://{}:18080/index.html", h.v4(2));
    let fetch = || h.gw.http_get(&url);
    assert!(
        eventually(std::time::Duration::from_secs(10), || fetch().is_some()),
        "{url} never answered"
    );
    assert_eq!(fetch().as_deref(), Some(page));

    p.rm(&["srv"]);
    assert_eq!(fetch(), None, "the mapping is gone with the container");
    let rules =
        String::from_utf8_lossy(&h.ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(!rules.contains("18080"), "no rule for the port is left: {rules}");
    let left = host_links(&p);
    assert!(
        left.iter().all(|l| l == "lo" || l == "eth0" || *l == bridge),
        "only the network's bridge stays: {left:?}"
    );
}

#[test]
fn podman_5_runs_a_container_on_the_routed_datapath() {
    let p = Podman::start_5(75);
    let h = &p.host;
    p.must(&[
        "network", "create", "-d", "nearhost", "-o", "datapath=routed", "--subnet",
        "198.18.175.0/24", "rt",
    ]);
    p.run("r", "rt", &["--cap-add", "NET_RAW"]);
    let ip = inspect(&p, "r", "rt", "IPAddress");
    assert!(p.addrs("r", "eth0").contains(&ip), "{ip} is on eth0");
    assert!(p.ping("r", &h.v4(2)), "the container reaches the host");
    assert!(h.ns.ping(&ip), "the host reaches the container");
    p.rm(&["r"]);
    assert_eq!(host_links(&p), ["lo", "eth0"], "the host end went with the container");
}

#[test]
fn podman_5_refuses_bad_nearhost_options_at_network_create() {
    let p = Podman::start_5(76);
    let cases: &[(&[&str], &str)] = &[
        (&["-o", "datapth=macvlan"], "datapth: is not a nearhost option"),
        (&["-o", "datapath=vxlan"], "datapath: \"vxlan\" is not one a Podman network can use"),
        (&["-o", "master=nope0"], "master: no interface named \"nope0\" in the host namespace"),
        (
            &["-o", "bridge=br0"],
            "bridge: applies only to datapath bridge; this network's datapath is macvlan",
        ),
        (&["-o", "mtu=abc"], "mtu: \"abc\" is not a non-negative integer"),
        (&["-o", "mtu=20"], "mtu: 20 is not a valid MTU"),
        (&["-o", "mode=vepa2"], "mode: \"vepa2\" is not one of"),
        (&["--ipam-driver", "dhcp"], "ipam_options.driver: \"dhcp\""),
        (
            &["-o", "datapath=bridge", "--interface-name", "eth0"],
            "network_interface: \"eth0\" (--interface-name) names the parent",
        ),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let mut cmd = vec!["network", "create", "-d", "nearhost", "--subnet", "198.18.176.0/24"];
        cmd.extend_from_slice(args);
        cmd.push(&name);
        let out = p.podman(&cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
    }
    let none = p.podman(&["network", "create", "-d", "nearhost", "nosubnet"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("subnets: none given"), "{none:?}");
    let listed = p.must(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(listed, "podman", "no refused network was saved: {listed}");

    // A bad per-container option is refused at run, and leaves nothing behind.
    p.must(&[
        "network", "create", "-d", "nearhost", "--subnet", "198.18.176.0/24", "--ip-range",
        "198.18.176.100-198.18.176.199", "ok",
    ]);
    let out =
        p.podman(&["run", "-d", "--name", "x", "--network", "ok:vlan=5", IMAGE, "sleep", "3600"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--network ok:vlan: \"5\": nearhost networks take no per-container options"),
        "{err}"
    );
    assert_eq!(host_links(&p), ["lo", "eth0"]);
}
