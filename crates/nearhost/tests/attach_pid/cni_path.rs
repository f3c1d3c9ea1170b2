//! One network file, two front ends: `nearhost attach` for one target and the
//! CNI protocol (env + stdin to the binary, as a runtime calls it) for another.
//! Same result shape, same IPAM state file, same kind of link.

use serde_json::Value;

use crate::attach_support::*;
use crate::support::*;

/// The sorted keys of a JSON object (and of its first array element, for lists).
fn shape(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> =
        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    keys
}

/// What libcni hands a plugin of a conflist: the plugin's object with the
/// list's `name` and `cniVersion`.
fn plugin_conf(file: &std::path::Path) -> Value {
    let list: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut p = list["plugins"][0].clone();
    p["name"] = list["name"].clone();
    p["cniVersion"] = list["cniVersion"].clone();
    p
}

#[test]
fn attach_and_the_cni_plugin_share_one_implementation() {
    let h = Host::new(63);
    let cli = Cli::new(&h.ns);
    let created =
        cli.net_create(&h, "shared", "macvlan", 63, &["--master", "eth0", "--default-route"]);
    let file = std::path::PathBuf::from(created["file"].as_str().unwrap());
    let by_cli = Sleeper::new();
    let by_runtime = Netns::new("c");

    let attached =
        cli.json(&["attach", &by_cli.pid().to_string(), "--net", "shared", "--ifname", "eth0"]);
    let conf = plugin_conf(&file);
    let from_cni = add(&h.ns, "runtime1", &by_runtime, &conf);
    let from_attach = &attached["result"];

    assert_eq!(shape(from_attach), shape(&from_cni), "top-level result keys");
    for list in ["interfaces", "ips", "routes"] {
        assert_eq!(
            from_attach[list].as_array().unwrap().len(),
            from_cni[list].as_array().unwrap().len(),
            "{list}"
        );
        assert_eq!(shape(&from_attach[list][0]), shape(&from_cni[list][0]), "{list}[0] keys");
    }
    assert_eq!(from_attach["cniVersion"], from_cni["cniVersion"]);
    assert_eq!(from_attach["routes"], from_cni["routes"], "the same IPAM routes");
    assert_eq!(from_attach["ips"][0]["gateway"], from_cni["ips"][0]["gateway"]);

    // One IPAM state file holds both reservations, under each front end's owner.
    let state: Value =
        serde_json::from_str(&h.state_file("shared").expect("IPAM state of network shared"))
            .unwrap();
    let owners: Vec<&str> = state["reservations"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["containerID"].as_str().unwrap())
        .collect();
    assert!(owners.contains(&"runtime1"), "{state}");
    assert!(owners.iter().any(|o| o.starts_with(&format!("pid-{}-", by_cli.pid()))), "{state}");

    let ns_cli = netns_of_pid(by_cli.pid());
    let kind = |ns: &Netns| ns.link("eth0").unwrap()["linkinfo"]["info_kind"].clone();
    assert_eq!(kind(&ns_cli), kind(&by_runtime));
    assert!(
        ns_cli.ping(&result_ip(&from_cni, 0)),
        "the attached process cannot reach the runtime's container"
    );
    assert!(by_runtime.ping(&result_ip(from_attach, 0)));

    del(&h.ns, "runtime1", &by_runtime.path(), &conf, Some(&from_cni));
    cli.json(&["detach", &by_cli.pid().to_string(), "--net", "shared"]);
    assert!(h.reservations("shared").is_empty());
    assert!(ns_cli.link_names().is_empty() && by_runtime.link_names().is_empty());
}
