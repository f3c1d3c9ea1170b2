//! Every supported spec version gets answers in its own format.

use serde_json::json;

use crate::support::*;

#[test]
fn version_lists_supported_versions() {
    let h = Netns::new("v");
    let out = Call::new(&h, "VERSION", "", "", "").run(br#"{"cniVersion": "0.4.0"}"#).expect_ok();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["supportedVersions"], json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    let out = Call::new(&h, "VERSION", "", "", "").run(b"").expect_ok();
    assert_eq!(out["cniVersion"], "1.1.0");
}

#[test]
fn add_answers_in_the_config_version_format() {
    let h = Host::new(60);
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let c = Netns::new("c");
        let conf = netconf(version, "ver", "macvlan", h.ipam_dual(), json!({"master": "eth0"}));
        let id = format!("v{i}");
        let r = add(&h.ns, &id, &c, &conf);
        assert_eq!(r["cniVersion"], *version);
        let has_version_field = r["ips"][0].get("version").is_some();
        assert_eq!(has_version_field, version.starts_with("0."), "{version}: {r}");
        if has_version_field {
            assert_eq!(r["ips"][0]["version"], "4");
            assert_eq!(r["ips"][1]["version"], "6");
        }
        assert_eq!(r["interfaces"][0].get("mtu").is_some(), *version == "1.1.0", "{version}: {r}");
        let chk = check(&h.ns, &id, &c, &conf, &r);
        if *version >= "0.4.0" {
            assert!(chk.ok, "{version}: {}", chk.json);
        } else {
            chk.expect_err(1, "CHECK needs cniVersion 0.4.0");
        }
        del(&h.ns, &id, &c.path(), &conf, Some(&r));
    }
    assert!(h.reservations("ver").is_empty());
}

#[test]
fn errors_are_written_in_the_config_version() {
    let h = Host::new(61);
    let c = Netns::new("c");
    let conf = netconf("0.4.0", "ev", "warp", h.ipam_v4(), json!({}));
    let out = Call::new(&h.ns, "ADD", "e1", &c.path(), "eth0").conf(&conf);
    out.expect_err(7, "datapath");
    assert_eq!(out.json["cniVersion"], "0.4.0");
}
