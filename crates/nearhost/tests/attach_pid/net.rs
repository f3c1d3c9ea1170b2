//! `nearhost net ls / show / create` through the CLI.

use crate::attach_support::*;
use crate::support::*;

#[test]
fn create_list_show_and_refuse() {
    let h = Host::new(76);
    let cli = Cli::new(&h.ns);
    let out = cli.run(&[
        "net", "create", "fast", "--datapath", "macvlan", "--master", "eth0", "--subnet",
        "198.18.76.0/24", "--subnet", "2001:2:76::/64", "--gateway", "198.18.76.254",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let file = cli.net_dir().join("fast.conflist");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "created network fast (macvlan, 198.18.76.0/24, 2001:2:76::/64) in {}",
            file.display()
        )
    );
    cli.net_create(&h, "br", "bridge", 176, &["--bridge", "nhtest0", "--ip-masq"]);
    std::fs::write(cli.net_dir().join("zz-broken.conf"), "nope").unwrap();

    let listed = cli.json(&["net", "ls"]);
    let names: Vec<_> = listed.as_array().unwrap().iter().map(|n| n["name"].clone()).collect();
    assert_eq!(
        names,
        vec![serde_json::json!("br"), serde_json::json!("fast"), serde_json::Value::Null]
    );
    assert_eq!(listed[1]["subnets"], serde_json::json!(["198.18.76.0/24", "2001:2:76::/64"]));
    assert_eq!(
        (listed[2]["valid"].as_bool(), listed[0]["valid"].as_bool()),
        (Some(false), Some(true))
    );
    let text = cli.run(&["net", "ls"]).stdout;
    assert!(text.starts_with("NAME  DATAPATH  SUBNETS"), "{text}");
    assert!(text.contains("zz-broken.conf  INVALID: not valid JSON"), "{text}");

    let shown = cli.json(&["net", "show", "br"]);
    assert_eq!(shown["config"]["plugins"][0]["bridge"], "nhtest0");
    assert_eq!(shown["config"]["plugins"][0]["isGateway"], true);
    assert_eq!(
        shown["config"]["plugins"][0]["ipam"]["ranges"][0][0]["rangeStart"],
        "198.18.176.100"
    );
    let text = cli.run(&["net", "show", "fast"]).stdout;
    assert!(text.starts_with(&format!("# {}\n{{", file.display())), "{text}");
    assert!(text.contains("\"gateway\": \"198.18.76.254\""), "{text}");

    let again = ["net", "create", "fast", "--datapath", "bridge", "--subnet", "198.18.77.0/24"];
    cli.fails(&again).expect_err("network_exists", &["network \"fast\" already exists", "--force"]);
    cli.json(&[&again[..], &["--force"]].concat());
    assert_eq!(cli.json(&["net", "show", "fast"])["datapath"], "bridge");
    cli.fails(&[
        "net", "create", "x", "--datapath", "bridge", "--master", "eth0", "--subnet",
        "198.18.78.0/24",
    ])
    .expect_err("bad_flag", &["--master \"eth0\": applies only to --datapath macvlan and ipvlan"]);
    cli.fails(&["net", "create", "x", "--datapath", "warp", "--subnet", "198.18.78.0/24"])
        .expect_err(
            "network_invalid",
            &[
                "network \"x\" would be invalid: datapath: unknown datapath \"warp\"",
                "nothing was written",
            ],
        );
    cli.fails(&["net", "create", "x", "--datapath", "macvlan", "--subnet", "198.18.78.5/24"])
        .expect_err("network_invalid", &["has host bits set"]);
    assert!(!cli.net_dir().join("x.conflist").exists());
    cli.fails(&["net", "show", "x"])
        .expect_err("network_not_found", &["network \"x\" is not defined"]);
}
