//! CHECK, GC, STATUS and the DEL variants runtimes really send.

use serde_json::json;

use crate::support::*;

#[test]
fn check_reports_precisely_what_differs() {
    let h = Host::new(50);
    let c1 = Netns::new("c");
    let conf = netconf("1.1.0", "chk", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    let r = add(&h.ns, "k1", &c1, &conf);
    check(&h.ns, "k1", &c1, &conf, &r).expect_ok();
    let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
    c1.ip(&["addr", "del", &ip, "dev", "eth0"]);
    check(&h.ns, "k1", &c1, &conf, &r).expect_err(106, &format!("eth0 lacks address {ip}"));
    let mut wrong_mode = conf.clone();
    wrong_mode["mode"] = json!("private");
    check(&h.ns, "k1", &c1, &wrong_mode, &r).expect_err(106, "");
    c1.ip(&["link", "del", "eth0"]);
    check(&h.ns, "k1", &c1, &conf, &r).expect_err(106, "interface eth0 is missing");
    let mut no_prev = conf.clone();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    Call::new(&h.ns, "CHECK", "k1", &c1.path(), "eth0").conf(&no_prev).expect_err(7, "prevResult");
    del(&h.ns, "k1", &c1.path(), &conf, Some(&r));
}

#[test]
fn gc_drops_reservations_not_in_valid_attachments() {
    let h = Host::new(51);
    let ctrs: Vec<Netns> = (0..3).map(|_| Netns::new("c")).collect();
    let conf = netconf("1.1.0", "gc", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    let results: Vec<_> =
        ctrs.iter().enumerate().map(|(i, c)| add(&h.ns, &format!("g{i}"), c, &conf)).collect();
    let keep = result_ip(&results[1], 0);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
    Call::new(&h.ns, "GC", "", "", "").conf(&gc).expect_ok();
    assert_eq!(h.reservations("gc"), vec![keep]);
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    Call::new(&h.ns, "GC", "", "", "").conf(&old).expect_err(1, "GC needs cniVersion 1.1.0");
}

#[test]
fn status_says_whether_new_attachments_can_work() {
    let h = Host::new(52);
    let conf = netconf("1.1.0", "st", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    let ok = Call::new(&h.ns, "STATUS", "", "", "").conf(&conf);
    assert!(ok.ok && ok.json.is_null(), "STATUS prints nothing on success: {}", ok.json);
    let mut missing = conf.clone();
    missing["master"] = json!("gone0");
    Call::new(&h.ns, "STATUS", "", "", "").conf(&missing).expect_err(50, "gone0");
}

#[test]
fn del_succeeds_when_the_namespace_is_already_gone() {
    let h = Host::new(53);
    let c1 = Netns::new("c");
    let conf = netconf(
        "1.1.0",
        "gone",
        "bridge",
        json!({"type": "nearhost", "dataDir": h.data_dir(),
        "ranges": [[{"subnet": "198.19.53.0/24", "gateway": "198.19.53.1"}]]}),
        json!({"bridge": "nhgone0", "isGateway": true}),
    );
    let r = add(&h.ns, "x1", &c1, &conf);
    let path = c1.path();
    drop(c1); // the runtime removed the namespace before DEL
    del(&h.ns, "x1", &path, &conf, Some(&r));
    del(&h.ns, "x1", &path, &conf, Some(&r));
    assert!(h.reservations("gone").is_empty());
    // The kernel dismantles a deleted namespace asynchronously (cleanup_net).
    let gone = eventually(std::time::Duration::from_secs(5), || {
        h.ns.link_names() == vec!["eth0", "nhgone0"]
    });
    assert!(gone, "the veth went with the namespace: {:?}", h.ns.link_names());
}

#[test]
fn repeated_add_failing_on_the_same_attachment_keeps_its_address() {
    let h = Host::new(54);
    let c1 = Netns::new("c");
    let conf = netconf("1.1.0", "rep", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    let r = add(&h.ns, "same", &c1, &conf);
    // A runtime retrying ADD for an attachment that exists gets an error, and
    // the rollback must not release the address the first ADD holds.
    Call::new(&h.ns, "ADD", "same", &c1.path(), "eth0")
        .conf(&conf)
        .expect_err(103, "already exists");
    assert_eq!(h.reservations("rep"), vec![result_ip(&r, 0)]);
    del(&h.ns, "same", &c1.path(), &conf, Some(&r));
}

#[test]
fn chained_plugin_uses_prev_result_addresses() {
    let h = Host::new(55);
    let c1 = Netns::new("c");
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}],
        "ips": [{"address": "198.18.55.77/24", "gateway": "198.18.55.1"}], "routes": [{"dst": "0.0.0.0/0"}]});
    let mut conf = netconf(
        "1.0.0",
        "chain",
        "macvlan",
        json!({}),
        json!({"master": "eth0", "prevResult": prev}),
    );
    conf.as_object_mut().unwrap().remove("ipam");
    let r = add(&h.ns, "ch1", &c1, &conf);
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["ips"][0]["address"], "198.18.55.77/24");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert!(c1.ping("198.18.55.1"));
    del(&h.ns, "ch1", &c1.path(), &conf, None);
}
