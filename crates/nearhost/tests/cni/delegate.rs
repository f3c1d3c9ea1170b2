//! `ipam.type` other than "nearhost" is delegated to that plugin on CNI_PATH.

use serde_json::json;

use crate::support::*;

#[test]
fn host_local_from_the_reference_plugins() {
    assert!(
        std::path::Path::new("/usr/lib/cni/host-local").exists(),
        "install containernetworking-plugins"
    );
    let h = Host::new(80);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let ipam = json!({"type": "host-local", "dataDir": h.data_dir(),
        "ranges": [[{"subnet": "198.18.80.0/24", "rangeStart": "198.18.80.50", "rangeEnd": "198.18.80.60", "gateway": "198.18.80.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]});
    let conf = netconf("1.0.0", "hl", "macvlan", ipam, json!({"master": "eth0"}));
    let r1 = add(&h.ns, "hl1", &c1, &conf);
    let r2 = add(&h.ns, "hl2", &c2, &conf);
    assert_eq!(r1["ips"][0]["address"], "198.18.80.50/24");
    assert!(c1.ping(&result_ip(&r2, 0)));
    assert!(c1.ping("198.18.80.1"));
    // host-local keeps one file per address under dataDir/NAME.
    assert!(h.data.path().join("hl").join("198.18.80.50").exists());
    del(&h.ns, "hl1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "hl2", &c2.path(), &conf, Some(&r2));
    assert!(
        !h.data.path().join("hl").join("198.18.80.50").exists(),
        "host-local reservation not released"
    );
}

/// The network name becomes a directory under every state directory; with a
/// delegated IPAM it once reached nearhost's driver state unchecked.
#[test]
fn a_network_name_that_would_leave_the_state_directory_is_refused() {
    let h = Host::new(82);
    let c1 = Netns::new("c");
    let ipam = json!({"type": "host-local", "dataDir": h.data_dir(),
        "ranges": [[{"subnet": "198.18.82.0/24", "rangeStart": "198.18.82.50", "gateway": "198.18.82.1"}]]});
    let conf = netconf("1.0.0", "../escape", "macvlan", ipam, json!({"master": "eth0"}));
    Call::new(&h.ns, "ADD", "n1", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(7, "name: \"../escape\" is not a valid network name");
    assert!(c1.link_names().is_empty());
    assert!(!h.data.path().parent().unwrap().join("escape").exists(), "host-local ran");
}

#[test]
fn delegate_failure_is_passed_on_and_nothing_is_left() {
    let h = Host::new(81);
    let c1 = Netns::new("c");
    let conf = netconf(
        "1.0.0",
        "hl",
        "macvlan",
        json!({"type": "no-such-ipam"}),
        json!({"master": "eth0"}),
    );
    Call::new(&h.ns, "ADD", "d1", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(7, "ipam.type: no plugin \"no-such-ipam\" in CNI_PATH");
    let bad = netconf(
        "1.0.0",
        "hl",
        "macvlan",
        json!({"type": "host-local", "ranges": [[{"subnet": "nope"}]]}),
        json!({"master": "eth0"}),
    );
    let out = Call::new(&h.ns, "ADD", "d2", &c1.path(), "eth0").conf(&bad);
    assert!(!out.ok && out.msg().starts_with("ipam plugin host-local (ADD)"), "{}", out.json);
    assert!(c1.link_names().is_empty());
}
