use serde_json::json;

use crate::support::*;

fn conf(h: &Host, mode: &str) -> serde_json::Value {
    netconf("1.1.0", "mv", "macvlan", h.ipam_v4(), json!({"master": "eth0", "mode": mode}))
}

#[test]
fn bridge_mode_two_containers_reach_each_other_and_the_gateway() {
    let h = Host::new(1);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, "bridge");
    let r1 = add(&h.ns, "ctr1", &c1, &conf);
    let r2 = add(&h.ns, "ctr2", &c2, &conf);

    assert_eq!(r1["cniVersion"], "1.1.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], c1.path());
    assert_eq!(r1["ips"][0]["interface"], 0);
    assert_eq!(r1["ips"][0]["gateway"], h.v4(1));
    let (ip1, ip2) = (result_ip(&r1, 0), result_ip(&r2, 0));
    assert_ne!(ip1, ip2);
    assert_eq!(c1.addrs("eth0"), vec![format!("{ip1}/24")]);
    let link = c1.link("eth0").expect("eth0 in container");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(link["address"], r1["interfaces"][0]["mac"]);
    let routes = c1.routes(false);
    assert!(routes.iter().any(|r| r["dst"] == "default" && r["gateway"] == h.v4(1)), "{routes:?}");

    assert!(c1.ping(&ip2), "container 1 cannot reach container 2");
    assert!(c2.ping(&h.v4(1)), "container 2 cannot reach the gateway");
    assert!(h.gw.ping(&ip1), "the gateway cannot reach container 1");
    check(&h.ns, "ctr1", &c1, &conf, &r1).expect_ok();

    del(&h.ns, "ctr1", &c1.path(), &conf, Some(&r1));
    assert!(c1.link("eth0").is_none());
    del(&h.ns, "ctr1", &c1.path(), &conf, Some(&r1)); // again
    del(&h.ns, "ctr1", "", &conf, None); // containerd's second DEL: no netns
    assert_eq!(h.reservations("mv"), vec![ip2.clone()]);
    del(&h.ns, "ctr2", &c2.path(), &conf, Some(&r2));
    assert!(h.reservations("mv").is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0"], "nothing left in the host namespace");
}

#[test]
fn private_mode_isolates_siblings_but_reaches_the_gateway() {
    let h = Host::new(2);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, "private");
    let r1 = add(&h.ns, "p1", &c1, &conf);
    let r2 = add(&h.ns, "p2", &c2, &conf);
    assert_eq!(c1.link("eth0").unwrap()["linkinfo"]["info_data"]["mode"], "private");
    assert!(c1.ping(&h.v4(1)));
    assert!(!c1.ping(&result_ip(&r2, 0)), "private macvlans must not reach each other");
    del(&h.ns, "p1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "p2", &c2.path(), &conf, Some(&r2));
}

#[test]
fn vepa_mode_sends_sibling_traffic_to_the_switch() {
    let h = Host::new(3);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, "vepa");
    let r1 = add(&h.ns, "v1", &c1, &conf);
    let r2 = add(&h.ns, "v2", &c2, &conf);
    assert_eq!(c1.link("eth0").unwrap()["linkinfo"]["info_data"]["mode"], "vepa");
    assert!(c2.ping(&h.v4(1)));
    // The "switch" (a veth end) does not hairpin, so VEPA siblings can't talk.
    assert!(!c1.ping(&result_ip(&r2, 0)));
    del(&h.ns, "v1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "v2", &c2.path(), &conf, Some(&r2));
}

#[test]
fn passthru_mode_owns_the_master() {
    let h = Host::new(4);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    // eth0 carries the host's default route: passthru on it must be asked for.
    let refused = conf(&h, "passthru");
    Call::new(&h.ns, "ADD", "t0", &c1.path(), "eth0")
        .conf(&refused)
        .expect_err(7, "the interface of the host's default route");
    assert!(c1.link_names().is_empty() && h.reservations("mv").is_empty());
    let mut conf = conf(&h, "passthru");
    conf["allowDefaultRoute"] = json!(true);
    let r1 = add(&h.ns, "t1", &c1, &conf);
    assert_eq!(c1.link("eth0").unwrap()["linkinfo"]["info_data"]["mode"], "passthru");
    assert!(c1.ping(&h.v4(1)));
    let second = Call::new(&h.ns, "ADD", "t2", &c2.path(), "eth0").conf(&conf);
    assert!(!second.ok, "a second macvlan on a passthru master must fail: {}", second.json);
    assert_eq!(h.reservations("mv"), vec![result_ip(&r1, 0)], "the failed ADD left a reservation");
    assert!(c2.link("eth0").is_none());
    del(&h.ns, "t1", &c1.path(), &conf, Some(&r1));
}

#[test]
fn dual_stack_addresses_are_usable_at_once() {
    let h = Host::new(5);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = netconf("1.0.0", "ds", "macvlan", h.ipam_dual(), json!({"master": "eth0"}));
    let r1 = add(&h.ns, "d1", &c1, &conf);
    let r2 = add(&h.ns, "d2", &c2, &conf);
    assert_eq!(r1["ips"].as_array().unwrap().len(), 2);
    let v6 = result_ip(&r1, 1);
    assert!(v6.starts_with("2001:2:5::"), "{v6}");
    // No DAD: the address must not be tentative right after ADD.
    let info = c1.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(!info.contains("tentative"), "{info}");
    assert!(c2.ping(&v6), "IPv6 between containers");
    assert!(c1.ping(&h.v6(1)), "IPv6 to the gateway");
    assert!(c1.ping(&result_ip(&r2, 0)));
    del(&h.ns, "d1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "d2", &c2.path(), &conf, Some(&r2));
    assert!(h.reservations("ds").is_empty());
}

#[test]
fn static_ip_and_mac_from_cni_args_and_capabilities() {
    let h = Host::new(6);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, "bridge");
    let args = format!("IgnoreUnknown=1;IP={};MAC=02:00:00:aa:bb:01", h.v4(120));
    let r1 = Call::new(&h.ns, "ADD", "s1", &c1.path(), "eth0")
        .env("CNI_ARGS", &args)
        .conf(&conf)
        .expect_ok();
    assert_eq!(r1["ips"][0]["address"], format!("{}/24", h.v4(120)));
    assert_eq!(r1["interfaces"][0]["mac"], "02:00:00:aa:bb:01");
    let mut caps = conf.clone();
    caps["runtimeConfig"] =
        json!({"ips": [format!("{}/24", h.v4(121))], "mac": "02:00:00:aa:bb:02"});
    let r2 = add(&h.ns, "s2", &c2, &caps);
    assert_eq!(r2["ips"][0]["address"], format!("{}/24", h.v4(121)));
    assert_eq!(c2.link("eth0").unwrap()["address"], "02:00:00:aa:bb:02");
    assert!(c1.ping(&h.v4(121)));
    del(&h.ns, "s1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "s2", &c2.path(), &caps, Some(&r2));
}

#[test]
fn master_defaults_to_the_default_route_interface() {
    let h = Host::new(7);
    let c1 = Netns::new("c");
    let conf = netconf("1.1.0", "dm", "macvlan", h.ipam_v4(), json!({}));
    let r = add(&h.ns, "m1", &c1, &conf);
    assert!(c1.ping(&h.v4(1)));
    del(&h.ns, "m1", &c1.path(), &conf, Some(&r));
}

#[test]
fn mtu_is_applied() {
    let h = Host::new(8);
    let c1 = Netns::new("c");
    let conf =
        netconf("1.1.0", "mtu", "macvlan", h.ipam_v4(), json!({"master": "eth0", "mtu": 1400}));
    let r = add(&h.ns, "u1", &c1, &conf);
    assert_eq!(c1.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(r["interfaces"][0]["mtu"], 1400);
    del(&h.ns, "u1", &c1.path(), &conf, Some(&r));
}

#[test]
fn addresses_are_announced_with_gratuitous_arp_and_unsolicited_na() {
    let h = Host::new(9);
    let c1 = Netns::new("c");
    let conf = netconf("1.1.0", "ga", "macvlan", h.ipam_dual(), json!({"master": "eth0"}));
    let (ip4, ip6) = (h.v4(130), h.v6(0x130));
    let filter =
        format!("(arp and arp[14:4] = 0xc612{:02x}82) or (icmp6 and ip6[40] == 136)", h.net);
    let mut dump = std::process::Command::new("ip")
        .args([
            "netns", "exec", &h.gw.name, "timeout", "30", "tcpdump", "-i", "gw0", "-n", "-l", "-c",
            "2", &filter,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tcpdump (apt install tcpdump)");
    // tcpdump says "listening on gw0" once its capture is open; in the emulated kernel lab that
    // takes longer than any fixed sleep we would pick, so wait for the line itself.
    let stderr = std::io::BufReader::new(dump.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
            seen.push(line);
        }
        seen.join("\n")
    });
    let attached = rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok();
    let r = Call::new(&h.ns, "ADD", "g1", &c1.path(), "eth0")
        .env("CNI_ARGS", &format!("IP={ip4},{ip6}"))
        .conf(&conf)
        .expect_ok();
    let out = dump.wait_with_output().unwrap();
    let log = reader.join().unwrap();
    assert!(attached, "tcpdump did not start capturing within 20 s: {log}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("who-has {ip4} tell {ip4}")),
        "no gratuitous ARP seen: {text} (tcpdump: {log})"
    );
    assert!(
        text.contains(&format!("neighbor advertisement, tgt is {ip6}")),
        "no unsolicited NA seen: {text}"
    );
    del(&h.ns, "g1", &c1.path(), &conf, Some(&r));
}
