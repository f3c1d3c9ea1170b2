//! A `.conflist` chain as libcni runs it: nearhost in-process, then a
//! reference plugin (`tuning`) from CNI_PATH with nearhost's result as
//! `prevResult`; DEL in reverse; a failing or missing plugin leaves nothing.

use serde_json::{json, Value};

use crate::attach_support::*;
use crate::support::*;

fn write_chain(cli: &Cli, h: &Host, name: &str, second: Value) {
    std::fs::create_dir_all(cli.net_dir()).unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "nearhost", "datapath": "macvlan", "master": "eth0", "ipam": h.ipam_v4()}, second]});
    std::fs::write(cli.net_dir().join(format!("{name}.conflist")), list.to_string()).unwrap();
}

#[test]
fn a_chain_adds_in_order_and_deletes_in_reverse() {
    assert!(
        std::path::Path::new("/usr/lib/cni/tuning").exists(),
        "install containernetworking-plugins"
    );
    let h = Host::new(64);
    let cli = Cli::new(&h.ns).env("CNI_PATH", "/usr/lib/cni");
    // tuning keeps what it changed (to restore it on DEL) in dataDir.
    let tuning_dir = cli.dir.path().join("tuning");
    write_chain(
        &cli,
        &h,
        "tuned",
        json!({"type": "tuning", "promisc": true, "mtu": 1400, "dataDir": tuning_dir}),
    );
    let s = Sleeper::new();
    let ns = netns_of_pid(s.pid());
    let a = cli.json(&["attach", &s.pid().to_string(), "--net", "tuned"]);
    let link = ns.link("eth1").expect("eth1");
    assert_eq!(link["mtu"], 1400, "tuning ran after nearhost, on nearhost's interface");
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "PROMISC"), "{link}");
    assert_eq!(
        a["result"]["interfaces"][0]["name"], "eth1",
        "the chain's result is tuning's, carrying nearhost's"
    );
    assert_eq!(h.reservations("tuned").len(), 1);
    cli.json(&["detach", &s.pid().to_string(), "--net", "tuned"]);
    assert!(ns.link_names().is_empty());
    assert!(h.reservations("tuned").is_empty());
}

#[test]
fn a_failing_or_missing_plugin_leaves_nothing_behind() {
    let h = Host::new(65);
    let cli = Cli::new(&h.ns).env("CNI_PATH", "/usr/lib/cni");
    let s = Sleeper::new();
    let ns = netns_of_pid(s.pid());
    let pid = s.pid().to_string();

    write_chain(&cli, &h, "missing", json!({"type": "no-such-plugin"}));
    let before = snapshot(&h, &ns, "missing", &cli);
    cli.fails(&["attach", &pid, "--net", "missing"]).expect_err(
        "plugin",
        &["plugin \"no-such-plugin\" (plugins[1]) is not in CNI_PATH (/usr/lib/cni)"],
    );
    assert_eq!(snapshot(&h, &ns, "missing", &cli), before);

    // tuning refuses its config after nearhost's ADD succeeded: nearhost's
    // part is deleted again.
    write_chain(
        &cli,
        &h,
        "broken",
        json!({"type": "tuning", "mtu": "big", "dataDir": cli.dir.path().join("tuning")}),
    );
    cli.fails(&["attach", &pid, "--net", "broken"])
        .expect_err("plugin", &["network \"broken\": plugin tuning ADD failed"]);
    assert_eq!(ns.link_names(), Vec::<String>::new(), "the macvlan was not rolled back");
    assert_eq!(h.reservations("broken"), Vec::<String>::new(), "the address was not released");
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
    assert!(cli.records().is_empty(), "a record was left: {:?}", cli.records());
}
