//! A network-namespace path as the target, over the bridge datapath.

use crate::attach_support::*;
use crate::support::*;

#[test]
fn a_namespace_path_over_bridge_and_gc_after_it_is_deleted() {
    let h = Host::new(62);
    let cli = Cli::new(&h.ns);
    cli.net_create(&h, "br", "bridge", 162, &[]);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let out = cli.run(&["attach", &c1.path(), "--net", "br"]);
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    for line in [
        format!("attached {} to network br", c1.path()),
        "  interface  eth1 (bridge), MAC ".to_string(),
        "  host side  nh0, nhv".to_string(),
        "  address    198.18.162.100/24, gateway 198.18.162.1".to_string(),
    ] {
        assert!(out.stdout.contains(&line), "{line:?} missing from:\n{}", out.stdout);
    }
    let r2 = cli.json(&["attach", &c2.path(), "--net", "br"]);
    assert_eq!(r2["target"]["kind"], "netns");
    assert_eq!(h.ns.link("nh0").expect("the bridge")["linkinfo"]["info_kind"], "bridge");
    assert!(c1.ping("198.18.162.101"), "container 1 cannot reach container 2 over the bridge");
    assert!(c1.ping("198.18.162.1"), "container 1 cannot reach the gateway (the bridge)");
    assert!(h.ns.ping("198.18.162.100"), "the host cannot reach container 1");

    let c2_path = c2.path();
    drop(c2);
    let listed = cli.json(&["ls"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["target"]["name"] == c2_path.as_str())
        .expect("c2 listed");
    assert_eq!(
        (row["status"].as_str(), row["reason"].as_str()),
        (Some("gone"), Some(format!("namespace {c2_path} no longer exists").as_str()))
    );
    let report = cli.json(&["gc"]);
    assert_eq!(report["removed"][0]["target"]["name"], c2_path.as_str(), "{report}");
    assert_eq!(h.reservations("br"), vec!["198.18.162.100".to_string()]);

    cli.json(&["detach", &c1.path(), "--net", "br"]);
    assert!(c1.link_names().is_empty());
    assert!(h.reservations("br").is_empty());
    assert!(cli.records().is_empty());
    // The bridge stays (other containers may join it), as with the CNI plugin.
    // c2's veth goes when the kernel dismantles its deleted namespace, which it
    // does asynchronously (a workqueue), so give it a moment.
    let settled =
        eventually(std::time::Duration::from_secs(5), || h.ns.link_names() == ["eth0", "nh0"]);
    assert!(settled, "host links: {:?}", h.ns.link_names());
}
