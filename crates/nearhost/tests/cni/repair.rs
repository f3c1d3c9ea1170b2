use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;

/// `nearhost ARGS`, outside any namespace (the IPAM commands touch files only).
fn nearhost(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin()).args(args).output().unwrap()
}

/// A state file that cannot be read stops its network (code 5, naming the file
/// and the command that rebuilds it); `nearhost ipam repair` rebuilds it from
/// the runtime's result cache — libcni's `cniCacheV1` files, which containerd
/// and Podman write after every ADD; this test is the runtime, so it writes
/// them as libcni does — and the next ADD gets an address nobody holds.
#[test]
fn an_unreadable_state_file_is_rebuilt_from_the_result_cache() {
    let h = Host::new(54);
    let conf = netconf("1.1.0", "rep", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    let (cache, attach_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ctrs: Vec<Netns> = (0..3).map(|_| Netns::new("c")).collect();
    let mut held: Vec<String> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for (i, c) in ctrs.iter().take(2).enumerate() {
        let id = format!("rep{i}");
        let r = add(&h.ns, &id, c, &conf);
        let config = base64::engine::general_purpose::STANDARD.encode(conf.to_string());
        let entry = json!({"kind": "cniCacheV1", "containerId": id, "ifName": "eth0",
                           "networkName": "rep", "config": config, "result": r});
        std::fs::write(cache.path().join(format!("rep-{id}-eth0")), entry.to_string()).unwrap();
        held.push(result_ip(&r, 0));
        results.push(r);
    }
    // Another network's cache entry must not be taken for this one's.
    let mut other = conf.clone();
    other["name"] = json!("other");
    let stranger = json!({"kind": "cniCacheV1", "containerId": "x", "ifName": "eth0",
        "networkName": "other",
        "config": base64::engine::general_purpose::STANDARD.encode(other.to_string()),
        "result": {"cniVersion": "1.1.0", "ips": [{"address": format!("{}/24", h.v4(200))}]}});
    std::fs::write(cache.path().join("other-x-eth0"), stranger.to_string()).unwrap();

    let dd = h.data_dir();
    std::fs::write(h.data.path().join("rep/state.json"), "{\"reservations\": {\"198.18").unwrap();
    Call::new(&h.ns, "ADD", "rep2", &ctrs[2].path(), "eth0")
        .conf(&conf)
        .expect_err(5, &format!("nearhost ipam repair rep --data-dir {dd}"));
    assert_eq!(ctrs[2].link_names(), Vec::<String>::new(), "nothing half-made");
    let checked = nearhost(&["ipam", "check", "--data-dir", &dd]);
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stdout).contains("rep: UNREADABLE"));

    let cache_dir = cache.path().display().to_string();
    let attach_dir = attach_state.path().display().to_string();
    let repair = |json: bool| {
        let mut args = vec![
            "ipam", "repair", "rep", "--data-dir", &dd, "--cni-cache", &cache_dir,
            "--attach-state", &attach_dir,
        ];
        if json {
            args.push("--json");
        }
        let out = nearhost(&args);
        assert!(out.status.success(), "repair: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let report: Value = serde_json::from_slice(&repair(true).stdout).unwrap();
    assert_eq!(report["repaired"], true, "{report}");
    assert_eq!(report["recovered"].as_array().unwrap().len(), 2, "{report}");
    assert!(std::path::Path::new(report["movedAside"].as_str().unwrap()).exists());
    let mut reserved = h.reservations("rep");
    reserved.sort();
    held.sort();
    assert_eq!(reserved, held, "exactly the cached attachments' addresses");

    let r2 = add(&h.ns, "rep2", &ctrs[2], &conf);
    assert!(!held.contains(&result_ip(&r2, 0)), "{} is held already", result_ip(&r2, 0));
    del(&h.ns, "rep0", &ctrs[0].path(), &conf, Some(&results[0]));
    assert_eq!(h.reservations("rep").len(), 2, "DEL released the rebuilt reservation");
    let again = String::from_utf8_lossy(&repair(false).stdout).to_string();
    assert!(again.contains("reads fine; nothing done"), "{again}");
    del(&h.ns, "rep1", &ctrs[1].path(), &conf, Some(&results[1]));
    del(&h.ns, "rep2", &ctrs[2].path(), &conf, Some(&r2));
}
