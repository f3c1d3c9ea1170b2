//! Cases that need kernel features this machine's kernel lacks (dummy parents,
//! netem). Marked ignored here; the kernel lab (scripts/kernel-lab) runs them on
//! Debian's kernel, where they must pass.

use std::time::Instant;

use serde_json::json;

use crate::support::*;

/// A host whose parent interface is a dummy device (no carrier, no peer):
/// children of the same parent still reach each other.
fn dummy_parent(datapath: &str, mode: &str, net: u8) {
    assert!(kernel_has("dummy"), "this kernel has no dummy devices");
    let h = Netns::new("h");
    h.ip(&["link", "add", "dummy0", "type", "dummy"]);
    h.ip(&["link", "set", "dummy0", "up"]);
    let data = tempfile::tempdir().unwrap();
    let ipam = json!({"type": "nearhost", "dataDir": data.path(), "ranges": [[{"subnet": format!("198.18.{net}.0/24")}]]});
    let conf = netconf("1.1.0", "dm", datapath, ipam, json!({"master": "dummy0", "mode": mode}));
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let r1 = add(&h, "d1", &c1, &conf);
    let r2 = add(&h, "d2", &c2, &conf);
    assert_eq!(c1.link("eth0").unwrap()["linkinfo"]["info_kind"], datapath);
    assert!(c1.ping(&result_ip(&r2, 0)), "{datapath} siblings on a dummy parent");
    check(&h, "d1", &c1, &conf, &r1).expect_ok();
    del(&h, "d1", &c1.path(), &conf, Some(&r1));
    del(&h, "d2", &c2.path(), &conf, Some(&r2));
    assert!(c1.link_names().is_empty() && c2.link_names().is_empty());
    assert_eq!(h.link_names(), vec!["dummy0"]);
}

#[test]
#[ignore = "needs dummy: runs in the kernel lab (scripts/kernel-lab)"]
fn macvlan_on_a_dummy_parent() {
    dummy_parent("macvlan", "bridge", 100);
}

#[test]
#[ignore = "needs dummy and ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn ipvlan_on_a_dummy_parent() {
    dummy_parent("ipvlan", "l2", 101);
}

/// Two hosts joined by a cable with 5 ms delay and 1% loss each way: containers
/// attached by nearhost see the delay, and TCP still gets its data through.
#[test]
#[ignore = "needs netem: runs in the kernel lab (scripts/kernel-lab)"]
fn lossy_delayed_cable_between_two_hosts() {
    let cable = Cable::new(102);
    cable.netem("delay 5ms loss 1%");
    let data = tempfile::tempdir().unwrap();
    let ipam = |first: u8| {
        json!({"type": "nearhost", "dataDir": data.path(),
        "ranges": [[{"subnet": "198.18.102.0/24", "rangeStart": format!("198.18.102.{first}"), "rangeEnd": format!("198.18.102.{}", first + 9)}]]})
    };
    let (c1, c2) = (Netns::new("c"), Netns::new("c"));
    let conf1 = netconf("1.1.0", "n1", "macvlan", ipam(10), json!({"master": "eth0"}));
    let conf2 = netconf("1.1.0", "n2", "macvlan", ipam(20), json!({"master": "eth0"}));
    let r1 = add(&cable.a, "x1", &c1, &conf1);
    let r2 = add(&cable.b, "x2", &c2, &conf2);
    let ip2 = result_ip(&r2, 0);
    assert!(c1.ping(&ip2), "across the lossy cable");
    let out = c1.exec(&["ping", "-c", "5", "-i", "0.2", "-q", &ip2]);
    let text = String::from_utf8_lossy(&out.stdout);
    let avg: f64 = text
        .lines()
        .find(|l| l.contains("min/avg"))
        .and_then(|l| l.split('/').nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(avg >= 9.5, "round trip {avg} ms should include 2 x 5 ms of netem delay: {text}");
    // 1 MB over TCP through 1% loss: retransmissions, but it all arrives.
    let server = c2.spawn(&["python3", "-c", "import socket;s=socket.socket();s.bind(('0.0.0.0',5001));s.listen();c,_=s.accept();n=0\nwhile True:\n  b=c.recv(65536)\n  if not b: break\n  n+=len(b)\nprint(n)"]);
    let start = Instant::now();
    let client = format!("import socket,time\nfor i in range(50):\n  try:\n    s=socket.create_connection(('{ip2}',5001),timeout=2);break\n  except OSError: time.sleep(0.1)\ns.sendall(b'x'*1000000);s.close()");
    assert!(c1.exec(&["python3", "-c", &client]).status.success());
    let got = server.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "1000000", "bytes received");
    eprintln!("1 MB across 5 ms + 1% loss in {:?}", start.elapsed());
    del(&cable.a, "x1", &c1.path(), &conf1, Some(&r1));
    del(&cable.b, "x2", &c2.path(), &conf2, Some(&r2));
}
