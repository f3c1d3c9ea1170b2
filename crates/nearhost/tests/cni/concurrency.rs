//! Many plugin processes at once, as a node starting a burst of pods.

use std::thread;

use serde_json::json;

use crate::support::*;

const N: usize = 50;

#[test]
fn fifty_parallel_adds_then_dels_leave_nothing() {
    let h = Host::new(70);
    let ctrs: Vec<Netns> = (0..N).map(|_| Netns::new("c")).collect();
    let conf = netconf("1.1.0", "par", "macvlan", h.ipam_dual(), json!({"master": "eth0"}));
    let results = add_parallel(&h.ns, "par", &ctrs, &conf);
    let mut v4: Vec<String> = results.iter().map(|r| result_ip(r, 0)).collect();
    let mut v6: Vec<String> = results.iter().map(|r| result_ip(r, 1)).collect();
    v4.sort();
    v4.dedup();
    v6.sort();
    v6.dedup();
    assert_eq!(v4.len(), N, "duplicate IPv4 addresses handed out");
    assert_eq!(v6.len(), N, "duplicate IPv6 addresses handed out");
    assert_eq!(h.reservations("par").len(), 2 * N);
    for (c, r) in ctrs.iter().zip(&results) {
        assert_eq!(c.addrs("eth0").len(), 2, "container {} lacks its addresses: {r}", c.name);
    }
    thread::scope(|s| {
        for (i, (c, r)) in ctrs.iter().zip(&results).enumerate() {
            let (hns, conf) = (&h.ns, &conf);
            s.spawn(move || del(hns, &format!("par{i}"), &c.path(), conf, Some(r)));
        }
    });
    assert!(h.reservations("par").is_empty(), "reservations left after DEL");
    assert!(ctrs.iter().all(|c| c.link_names().is_empty()), "links left in containers");
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}
