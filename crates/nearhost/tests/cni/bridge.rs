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
    assert!(nat_table(&h).contains("nearhost"), "the NAT table is there");
    assert!(!nat_table(&h).contains("8080"), "mapping must be removed on DEL");
}

/// The host's NAT table as `nft list` prints it ("" when there is none).
fn nat_table(h: &Host) -> String {
    String::from_utf8_lossy(&h.ns.exec(&["nft", "list", "table", "inet", "nearhost"]).stdout)
        .into_owned()
}

/// Serves one connection on port 80 (IPv4 and IPv6) in `c` and connects to
/// `addr`:`port` from the gateway namespace: what the container sent, or ""
/// when nothing answered within `tries` tenths of a second.
fn fetch_mapped(h: &Host, c: &Netns, addr: &str, port: u16, tries: u32) -> String {
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &c.name, "python3", "-c",
            "import socket;s=socket.create_server(('::',80),family=socket.AF_INET6,dualstack_ipv6=True,reuse_port=True);c,_=s.accept();c.sendall(b'hello-from-container');c.close()"])
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(server);
    let client = format!("import socket,time\nfor i in range({tries}):\n  try:\n    s=socket.create_connection(('{addr}',{port}),timeout=1);print(s.recv(100).decode());break\n  except OSError: time.sleep(0.1)");
    let out = h.gw.exec(&["python3", "-c", &client]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mapping(port: u16, host_ip: Option<&str>) -> serde_json::Value {
    let mut m = json!({"hostPort": port, "containerPort": 80, "protocol": "tcp"});
    if let Some(ip) = host_ip {
        m["hostIP"] = json!(ip);
    }
    json!({"portMappings": [m]})
}

/// A DEL without prevResult (a runtime cleaning up after a failed ADD) removes
/// its own attachment's mappings only, never another container's mapping of
/// the same host port.
#[test]
fn del_without_prev_result_leaves_another_containers_mapping() {
    let h = Host::new(23);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let mut mapped = conf(&h, json!({}));
    mapped["runtimeConfig"] = mapping(8081, None);
    add(&h.ns, "m1", &c1, &mapped);
    add(&h.ns, "m2", &c2, &conf(&h, json!({})));
    assert_eq!(fetch_mapped(&h, &c1, &h.v4(2), 8081, 50), "hello-from-container");
    del(&h.ns, "m2", &c2.path(), &mapped, None);
    assert_eq!(
        fetch_mapped(&h, &c1, &h.v4(2), 8081, 50),
        "hello-from-container",
        "m1's mapping survives m2's DEL"
    );
    del(&h.ns, "m1", &c1.path(), &mapped, None);
    assert!(!nat_table(&h).contains("8081"), "m1's own DEL removes it:\n{}", nat_table(&h));
}

/// A mapping for one host address (hostIP) is open on that address only, and
/// a dual-stack container's mapping is open on IPv6 too.
#[test]
fn port_mappings_honour_host_ip_and_ipv6() {
    let h = Host::new(24);
    h.ns.ip(&["addr", "add", &format!("{}/24", h.v4(3)), "dev", "eth0"]);
    h.ns.ip(&["-6", "addr", "add", &format!("{}/64", h.v6(2)), "dev", "eth0", "nodad"]);
    // The operator's part: IPv6 clients come in by eth0 (see docs/ARCHITECTURE.md).
    h.ns.ip(&["link", "set", "eth0", "up"]);
    h.ns.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.force_forwarding=1"]);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let mut one = conf(&h, json!({}));
    one["runtimeConfig"] = mapping(8082, Some(&h.v4(3)));
    let r1 = add(&h.ns, "h1", &c1, &one);
    assert_eq!(fetch_mapped(&h, &c1, &h.v4(3), 8082, 50), "hello-from-container");
    assert_eq!(fetch_mapped(&h, &c1, &h.v4(2), 8082, 10), "", "open on the hostIP only");

    let mut dual = conf(&h, json!({}));
    dual["ipam"]["ranges"].as_array_mut().unwrap().push(
        json!([{"subnet": format!("2001:2:{}:1::/64", h.net), "gateway": format!("2001:2:{}:1::1", h.net)}]),
    );
    dual["ipam"]["routes"].as_array_mut().unwrap().push(json!({"dst": "::/0"}));
    dual["runtimeConfig"] = mapping(8083, None);
    let r2 = add(&h.ns, "h2", &c2, &dual);
    assert_eq!(fetch_mapped(&h, &c2, &h.v6(2), 8083, 50), "hello-from-container", "IPv6");
    assert_eq!(fetch_mapped(&h, &c2, &h.v4(2), 8083, 50), "hello-from-container", "IPv4");

    // A hostIP of a family the container has no address of is refused.
    let mut v6_only_host = conf(&h, json!({}));
    v6_only_host["runtimeConfig"] = mapping(8084, Some(&h.v6(2)));
    let c3 = Netns::new("c");
    Call::new(&h.ns, "ADD", "h3", &c3.path(), "eth0")
        .conf(&v6_only_host)
        .expect_err(7, "runtimeConfig.portMappings[0].hostIP");
    del(&h.ns, "h1", &c1.path(), &one, Some(&r1));
    del(&h.ns, "h2", &c2.path(), &dual, Some(&r2));
    assert!(!nat_table(&h).contains("808"), "{}", nat_table(&h));
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

/// A host port (on an address, or on all) goes to one container: a second
/// mapping that overlaps is refused, naming the field; the first still works.
#[test]
fn a_host_port_is_mapped_to_one_container_only() {
    let h = Host::new(25);
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let mut mapped = conf(&h, json!({}));
    mapped["runtimeConfig"] = mapping(8085, None);
    let r1 = add(&h.ns, "o1", &c1, &mapped);
    let mut same = conf(&h, json!({}));
    same["runtimeConfig"] = mapping(8085, Some(&h.v4(2)));
    Call::new(&h.ns, "ADD", "o2", &c2.path(), "eth0")
        .conf(&same)
        .expect_err(7, "runtimeConfig.portMappings[0].hostPort: tcp 8085 is already mapped");
    assert!(c2.link_names().is_empty(), "the refused ADD was rolled back");
    assert_eq!(fetch_mapped(&h, &c1, &h.v4(2), 8085, 50), "hello-from-container");
    del(&h.ns, "o1", &c1.path(), &mapped, Some(&r1));
}
