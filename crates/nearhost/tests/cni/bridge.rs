use serde_json::json;

use crate::support::*;

/// A bridge network on 198.19.NET.0/24 behind the host's NIC (198.18.NET.0/24).
fn conf(h: &Host, extra: serde_json::Value) -> serde_json::Value {
    let net = h.net;
    let ipam = json!({"type": "nearhost", "dataDir": h.data_dir(),
        "ranges": [[{"subnet": format!("198.19.{net}.0/24"), "gateway": format!("198.19.{net}.1")}]],
        "routes": [{"dst": "0.0.0.0/0"}]});
    let mut base = json!({"bridge": "nhtest0", "isGateway": true, "ipMasq": true});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    netconf("1.1.0", "br", "bridge", ipam, base)
}

#[test]
fn gateway_bridge_with_masquerade() {
    let h = Host::new(20);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf = conf(&h, json!({}));
    let r1 = add(&h.ns, "b1", &c1, &conf);
    let r2 = add(&h.ns, "b2", &c2, &conf);
    let ifaces = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], "nhtest0");
    assert!(ifaces[1].get("sandbox").is_none());
    assert_eq!(ifaces[2]["sandbox"], c1.path());
    assert_eq!(r1["ips"][0]["interface"], 2);
    let host_veth = ifaces[1]["name"].as_str().unwrap();
    let veth = h.ns.link(host_veth).expect("host end of the veth");
    assert_eq!(veth["master"], "nhtest0");
    assert!(h.ns.addrs("nhtest0").contains(&"198.19.20.1/24".to_string()));
    assert_eq!(h.ns.sysctl("net.ipv4.ip_forward"), "1");

    assert!(c1.ping(&result_ip(&r2, 0)), "containers on one bridge");
    assert!(c1.ping("198.19.20.1"), "container to its gateway (the bridge)");
    // Leaving the host, the container's address is masqueraded to the NIC's.
    assert!(c2.ping(&h.v4(1)), "container to the outside through NAT");
    check(&h.ns, "b1", &c1, &conf, &r1).expect_ok();

    del(&h.ns, "b1", &c1.path(), &conf, Some(&r1));
    assert!(h.ns.link(host_veth).is_none(), "host veth removed with the container end");
    del(&h.ns, "b1", &c1.path(), &conf, Some(&r1));
    del(&h.ns, "b2", &c2.path(), &conf, Some(&r2));
    assert!(h.reservations("br").is_empty());
    assert_eq!(h.ns.link_names(), vec!["eth0", "nhtest0"], "only the (shared) bridge stays");
}

#[test]
fn port_mapping_reaches_the_container_through_the_host_address() {
    let h = Host::new(21);
    let c1 = Netns::new("c");
    let mut conf = conf(&h, json!({}));
    conf["runtimeConfig"] =
        json!({"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"}]});
    let r = add(&h.ns, "pm1", &c1, &conf);
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &c1.name, "python3", "-c",
            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',80));s.listen();c,_=s.accept();c.sendall(b'hello-from-container');c.close()"])
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(server);
    let client = "import socket,time\nfor i in range(50):\n  try:\n    s=socket.create_connection(('198.18.21.2',8080),timeout=1);print(s.recv(100).decode());break\n  except OSError: time.sleep(0.1)";
    let out = h.gw.exec(&["python3", "-c", client]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello-from-container");
    del(&h.ns, "pm1", &c1.path(), &conf, Some(&r));
    let maps = h.ns.exec(&["nft", "list", "map", "inet", "nearhost", "tcp4"]);
    assert!(
        !String::from_utf8_lossy(&maps.stdout).contains("8080"),
        "mapping must be removed on DEL"
    );
}

#[test]
fn failed_add_after_the_veth_exists_rolls_everything_back() {
    let h = Host::new(22);
    let c1 = Netns::new("c");
    let mut conf = conf(&h, json!({"bridge": "nhroll0"}));
    // A route via a gateway that is not on-link fails after the veth pair,
    // rename and addresses are done: all of it must be undone.
    conf["ipam"]["routes"] = json!([{"dst": "198.19.200.0/24", "gw": "198.19.99.99"}]);
    let out = Call::new(&h.ns, "ADD", "rb1", &c1.path(), "eth0").conf(&conf);
    out.expect_err(105, "198.19.200.0/24");
    assert!(h.reservations("br").is_empty(), "reservation leaked");
    assert_eq!(h.ns.link_names(), vec!["eth0"], "veth or bridge leaked in the host");
    assert!(c1.link_names().is_empty(), "link leaked in the container");
}
