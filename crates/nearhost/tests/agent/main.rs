//! Multi-host: `nearhost agent` with real etcd (Debian's etcd-server), hosts
//! and etcd members in namespaces on one switch, containers attached through
//! the CNI protocol with `"ipam": {"type": "nearhost", "pool": …}`.

use nearhost_testkit as support;

use nearhost_testkit::agent as fixture;

use std::collections::HashSet;
use std::time::Duration;

use fixture::*;

mod packaged;
use serde_json::{json, Value};
use support::*;

struct Cluster {
    sw: Switch,
    etcd: Vec<EtcdMember>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// `members` etcd members, a pool `p1` (198.19.0.0/20 in /26 blocks), and
    /// `n` nodes in `mode` with running agents.
    fn new(members: u8, n: u8, mode: &str) -> Cluster {
        Cluster::with_block_size(members, n, mode, 26)
    }

    fn with_block_size(members: u8, n: u8, mode: &str, block_size: u8) -> Cluster {
        let (sw, etcd, ep) = etcd_with_pool(members, "p1", "198.19.0.0/20", block_size);
        let mut nodes: Vec<Node> = (1..=n).map(|i| Node::new(&sw, i, mode)).collect();
        for node in &mut nodes {
            node.start_agent(&ep, &["--pool", "p1"]);
        }
        Cluster { sw, etcd, nodes }
    }

    fn ep(&self) -> String {
        endpoints(&self.etcd)
    }
}

fn block_of(result: &Value) -> String {
    // the container's address within its /26 block
    let ip: std::net::Ipv4Addr = result_ip(result, 0).parse().unwrap();
    let o = ip.octets();
    format!("{}.{}.{}.{}/26", o[0], o[1], o[2], o[3] & 0xc0)
}

fn containers_on_every_node_reach_each_other(mode: &str) {
    let c = Cluster::new(1, 3, mode);
    let ctrs: Vec<Netns> = (0..3).map(|_| Netns::new("c")).collect();
    let results: Vec<Value> = c
        .nodes
        .iter()
        .zip(&ctrs)
        .map(|(n, ctr)| add(&n.ns, &format!("ctr-{}", n.name), ctr, &n.conf("p1")))
        .collect();
    let blocks: HashSet<String> = results.iter().map(block_of).collect();
    assert_eq!(blocks.len(), 3, "each host hands out addresses from its own block: {results:?}");
    for (i, r) in results.iter().enumerate().skip(1) {
        let ip = result_ip(r, 0);
        assert!(
            eventually(Duration::from_secs(10), || ctrs[0].ping(&ip)),
            "{mode}: container on node1 cannot reach node{}'s container {ip}",
            i + 1
        );
    }
    // node1 has a route to every other node's block via that node
    let routes = c.nodes[0].ns.routes(false);
    for (i, r) in results.iter().enumerate().skip(1) {
        let block = block_of(r);
        assert!(
            routes.iter().any(|rt| rt["dst"] == block && rt["gateway"] == c.nodes[i].ip),
            "{mode}: no route to {block}: {routes:?}"
        );
    }
    assert!(c.nodes[0].metric("nearhost_agent_routes_programmed") >= 2.0);
    for (n, (ctr, r)) in c.nodes.iter().zip(ctrs.iter().zip(&results)) {
        del(&n.ns, &format!("ctr-{}", n.name), &ctr.path(), &n.conf("p1"), Some(r));
    }
}

#[test]
fn three_hosts_routed() {
    containers_on_every_node_reach_each_other("routed");
}

#[test]
fn three_hosts_vxlan() {
    containers_on_every_node_reach_each_other("vxlan");
}

#[test]
fn a_dead_agent_loses_its_blocks_after_the_ttl_and_gets_them_back_on_restart() {
    let mut c = Cluster::new(1, 3, "routed");
    let ctr3 = Netns::new("c");
    let r3 = add(&c.nodes[2].ns, "keep-me", &ctr3, &c.nodes[2].conf("p1"));
    let block3 = block_of(&r3);
    let ctr1 = Netns::new("c");
    add(&c.nodes[0].ns, "probe", &ctr1, &c.nodes[0].conf("p1"));
    assert!(eventually(Duration::from_secs(10), || ctr1.ping(&result_ip(&r3, 0))));

    c.nodes[2].agent.kill(); // SIGKILL: no goodbye
    let ep = c.ep();
    let gone = eventually(Duration::from_secs(15), || {
        !pool_usage(&c.etcd[0].ns, &ep, "p1").1.contains(&"node3".to_string())
    });
    assert!(gone, "node3's blocks still claimed after its lease TTL");
    assert!(
        eventually(Duration::from_secs(10), || c.nodes[0]
            .ns
            .routes(false)
            .iter()
            .all(|r| r["dst"] != block3)),
        "node1 still routes {block3} to the dead node"
    );

    // Back again: it re-registers and takes back the block its container uses.
    let ep2 = c.ep();
    c.nodes[2].start_agent(&ep2, &["--pool", "p1"]);
    assert!(
        eventually(Duration::from_secs(15), || c.nodes[0]
            .ns
            .routes(false)
            .iter()
            .any(|r| r["dst"] == block3)),
        "route to {block3} did not come back"
    );
    assert!(
        eventually(Duration::from_secs(10), || ctr1.ping(&result_ip(&r3, 0))),
        "the container kept its address and is reachable again"
    );
    let (_, nodes) = pool_usage(&c.etcd[0].ns, &ep2, "p1");
    assert!(nodes.contains(&"node3".to_string()));
}

#[test]
fn etcd_down_adds_still_work_and_the_agent_reconnects() {
    let c = Cluster::new(1, 2, "routed");
    let remote = Netns::new("c");
    let rr = add(&c.nodes[1].ns, "remote", &remote, &c.nodes[1].conf("p1"));
    let local = Netns::new("c");
    add(&c.nodes[0].ns, "local", &local, &c.nodes[0].conf("p1"));
    assert!(eventually(Duration::from_secs(10), || local.ping(&result_ip(&rr, 0))));

    c.etcd[0].proc.signal(libc::SIGSTOP); // etcd hangs (worse than gone: no RST)
    let more = Netns::new("c");
    let started = std::time::Instant::now();
    let r = add(&c.nodes[0].ns, "during-outage", &more, &c.nodes[0].conf("p1"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an ADD with free addresses must not wait on etcd ({:?})",
        started.elapsed()
    );
    assert!(!r["ips"].as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(local.ping(&result_ip(&rr, 0)), "routes stay while etcd is away");

    c.etcd[0].proc.signal(libc::SIGCONT);
    assert!(
        eventually(Duration::from_secs(30), || c.nodes[0].http("/readyz").0 == 200),
        "agent did not recover: {}",
        c.nodes[0].agent_log()
    );
    // a brand-new block can be claimed again: fill the node's first block
    let ctrs: Vec<Netns> = (0..64).map(|_| Netns::new("c")).collect();
    for (i, ctr) in ctrs.iter().enumerate() {
        add(&c.nodes[0].ns, &format!("fill{i}"), ctr, &c.nodes[0].conf("p1"));
    }
    assert!(
        eventually(Duration::from_secs(6), || c.nodes[0].metric("nearhost_agent_blocks_owned")
            >= 2.0),
        "the agent claimed more blocks after etcd returned"
    );
}

/// Blocks `node` routes via `gateway`.
fn routed_via(node: &Node, gateway: &str) -> HashSet<String> {
    node.ns
        .routes(false)
        .iter()
        .filter(|r| r["gateway"] == gateway)
        .filter_map(|r| r["dst"].as_str().map(String::from))
        .collect()
}

/// ADDs containers on `node` until it owns one block more than before (at
/// most `limit` ADDs); the containers, kept so that their addresses stay used.
fn claim_one_more_block(node: &Node, tag: &str, limit: usize) -> Vec<Netns> {
    let before = node.metric("nearhost_agent_blocks_owned");
    let mut ctrs = Vec::new();
    for i in 0..limit {
        let ctr = Netns::new("c");
        add(&node.ns, &format!("{tag}{i}"), &ctr, &node.conf("p1"));
        ctrs.push(ctr);
        if node.metric("nearhost_agent_blocks_owned") > before {
            return ctrs;
        }
    }
    assert!(
        eventually(Duration::from_secs(6), || node.metric("nearhost_agent_blocks_owned") > before),
        "{limit} ADDs on {} claimed no new block",
        node.name
    );
    ctrs
}

/// etcd's current revision, then a physical compaction up to it.
fn compact(m: &EtcdMember) -> u64 {
    let ctl = |args: &[&str]| {
        run(
            "ip",
            &[&["netns", "exec", &m.ns.name, "etcdctl", "--endpoints", &m.client_url()][..], args]
                .concat(),
        )
    };
    let status = ctl(&["endpoint", "status", "-w", "json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!("etcdctl endpoint status: {e}: {}", String::from_utf8_lossy(&status.stderr))
    });
    let rev = v[0]["Status"]["header"]["revision"].as_u64().expect("a revision");
    let out = ctl(&["compact", &rev.to_string(), "--physical"]);
    assert!(
        out.status.success(),
        "etcdctl compact {rev}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = ctl(&["get", "--rev", "1", "--prefix", ""]);
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("compacted"),
        "history before {rev} is gone: {}",
        String::from_utf8_lossy(&old.stderr)
    );
    rev
}

#[test]
fn routes_follow_new_blocks_across_compaction_and_an_etcd_restart() {
    // /28 blocks: 16 addresses, so a few ADDs claim the next block.
    let mut c = Cluster::with_block_size(1, 2, "routed", 28);
    let via = c.nodes[1].ip.clone();
    let in_step = |c: &Cluster| {
        let owned = c.nodes[1].metric("nearhost_agent_blocks_owned") as usize;
        eventually(Duration::from_secs(15), || routed_via(&c.nodes[0], &via).len() == owned)
    };
    assert!(
        in_step(&c),
        "node1 routes every block of node2 at the start: {:?}",
        routed_via(&c.nodes[0], &via)
    );

    // Compaction drops the history the watches started from.
    compact(&c.etcd[0]);
    let mut keep = claim_one_more_block(&c.nodes[1], "a", 40);
    assert!(
        in_step(&c),
        "after compaction, node1 learns node2's new block: {:?}\n{}",
        routed_via(&c.nodes[0], &via),
        c.nodes[0].agent_log()
    );

    // etcd restarts (same data): every watch breaks and is set up again.
    c.etcd[0].proc.kill();
    c.etcd[0].start("existing");
    assert!(eventually(Duration::from_secs(30), || c.etcd[0].healthy()), "etcd came back");
    for n in &c.nodes {
        assert!(
            eventually(Duration::from_secs(30), || n.http("/readyz").0 == 200),
            "{} reconnected: {}",
            n.name,
            n.agent_log()
        );
    }
    keep.extend(claim_one_more_block(&c.nodes[1], "b", 40));
    assert!(
        in_step(&c),
        "after the restart, node1 learns node2's new block: {:?}\n{}",
        routed_via(&c.nodes[0], &via),
        c.nodes[0].agent_log()
    );

    // And both at once: compacted while the agents were away.
    c.etcd[0].proc.kill();
    c.etcd[0].start("existing");
    assert!(eventually(Duration::from_secs(30), || c.etcd[0].healthy()), "etcd came back");
    compact(&c.etcd[0]);
    keep.extend(claim_one_more_block(&c.nodes[1], "d", 40));
    assert!(
        in_step(&c),
        "after restart + compaction, node1 learns node2's new block: {:?}\n{}",
        routed_via(&c.nodes[0], &via),
        c.nodes[0].agent_log()
    );
    assert!(keep.len() >= 3);
}

#[test]
fn an_ipv6_pool_gives_each_host_its_blocks_and_routes_between_them() {
    let (sw, _etcd, ep) = etcd_with_pool(1, "p6", "2001:2:96::/112", 122);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::new(&sw, i, "routed")).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        // host-gw over IPv6: the node's address on the switch is its next hop.
        n.ip = format!("2001:2:95::{}", 11 + i);
        n.ns.ip(&["-6", "addr", "add", &format!("{}/64", n.ip), "dev", "eth0", "nodad"]);
        n.start_agent(&ep, &["--pool", "p6"]);
    }
    let ctrs = [Netns::new("c"), Netns::new("c")];
    let results: Vec<Value> = nodes
        .iter()
        .zip(&ctrs)
        .map(|(n, c)| add(&n.ns, &format!("v6-{}", n.name), c, &n.conf("p6")))
        .collect();
    let ips: Vec<std::net::Ipv6Addr> =
        results.iter().map(|r| result_ip(r, 0).parse().expect("an IPv6 address")).collect();
    let block = |ip: &std::net::Ipv6Addr| {
        format!("{}/122", std::net::Ipv6Addr::from(u128::from(*ip) & !0x3f))
    };
    assert_ne!(block(&ips[0]), block(&ips[1]), "each host hands out addresses from its own block");
    for ip in &ips {
        assert!(ip.to_string().starts_with("2001:2:96::"), "{ip} is in the pool");
    }
    let to_node2 = || {
        nodes[0]
            .ns
            .routes(true)
            .iter()
            .any(|r| r["dst"] == block(&ips[1]) && r["gateway"] == nodes[1].ip)
    };
    assert!(
        eventually(Duration::from_secs(10), to_node2),
        "node1 routes node2's block via node2: {:?}",
        nodes[0].ns.routes(true)
    );
    assert!(
        eventually(Duration::from_secs(10), || ctrs[0].ping(&ips[1].to_string())),
        "container on node1 reaches node2's container over IPv6"
    );
    for (n, (c, r)) in nodes.iter().zip(ctrs.iter().zip(&results)) {
        del(&n.ns, &format!("v6-{}", n.name), &c.path(), &n.conf("p6"), Some(r));
    }
}

#[test]
fn a_three_member_etcd_cluster_survives_losing_one() {
    let mut c = Cluster::new(3, 2, "routed");
    c.etcd[2].proc.kill();
    let ctrs: Vec<Netns> = (0..70).map(|_| Netns::new("c")).collect();
    for (i, ctr) in ctrs.iter().enumerate() {
        add(&c.nodes[0].ns, &format!("x{i}"), ctr, &c.nodes[0].conf("p1"));
    }
    assert!(
        eventually(Duration::from_secs(6), || c.nodes[0].metric("nearhost_agent_blocks_owned")
            >= 2.0),
        "a new block was claimed with one member down"
    );
}

#[test]
fn parallel_adds_on_several_hosts_never_duplicate_an_address() {
    let c = Cluster::new(1, 3, "routed");
    let per_node = 40;
    let ctrs: Vec<Vec<Netns>> =
        c.nodes.iter().map(|_| (0..per_node).map(|_| Netns::new("c")).collect()).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for (n, list) in c.nodes.iter().zip(&ctrs) {
            for (i, ctr) in list.iter().enumerate() {
                let conf = n.conf("p1");
                hs.push(s.spawn(move || add(&n.ns, &format!("{}-{i}", n.name), ctr, &conf)));
            }
        }
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<String> = results.iter().map(|r| result_ip(r, 0)).collect();
    assert_eq!(ips.len(), results.len(), "a duplicate address across the cluster");
    // 40 containers per node need a second /26 block on every node
    for n in &c.nodes {
        assert!(n.metric("nearhost_agent_blocks_owned") >= 1.0);
    }
}

#[test]
fn bad_input_is_refused_clearly_and_writes_nothing() {
    let c = Cluster::new(1, 1, "routed");
    let ep = c.ep();
    let ns = &c.etcd[0].ns;
    let err = |args: &[&str]| {
        let out = pool_cmd(ns, &ep, args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(err(&["create", "p2", "--subnet", "198.19.8.0/21"]).contains("overlaps pool \"p1\""));
    assert!(err(&["create", "p1", "--subnet", "198.19.64.0/20"]).contains("already exists"));
    assert!(err(&["create", "p3", "--subnet", "198.19.64.0/20", "--block-size", "16"])
        .contains("--block-size"));
    assert!(err(&["rm", "nosuch"]).contains("does not exist"));
    assert!(err(&["rm", "p1"]).contains("still has"), "a pool with claimed blocks is not removed");
    let out = pool_cmd(ns, &ep, &["ls", "--json"]);
    let pools: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pools.as_array().unwrap().len(), 1, "nothing half-written: {pools}");

    // a container asking for a pool that does not exist
    let ctr = Netns::new("c");
    Call::new(&c.nodes[0].ns, "ADD", "u1", &ctr.path(), "eth0")
        .conf(&c.nodes[0].conf("nosuch"))
        .expect_err(7, "pool \"nosuch\" does not exist");
    assert!(ctr.link_names().is_empty());

    // an exhausted pool: /28 in /30 blocks is 4 blocks of one address each
    let out =
        pool_cmd(ns, &ep, &["create", "tiny", "--subnet", "198.19.128.0/28", "--block-size", "30"]);
    assert!(out.status.success());
    let ctrs: Vec<Netns> = (0..5).map(|_| Netns::new("c")).collect();
    for (i, ctr) in ctrs.iter().enumerate().take(4) {
        add(&c.nodes[0].ns, &format!("t{i}"), ctr, &c.nodes[0].conf("tiny"));
    }
    Call::new(&c.nodes[0].ns, "ADD", "t4", &ctrs[4].path(), "eth0")
        .conf(&c.nodes[0].conf("tiny"))
        .expect_err(100, "pool \"tiny\" is exhausted");

    // etcd unreachable at start-up: a clear error within the timeout
    let lonely = Netns::new("n");
    c.sw.plug(&lonely, 99);
    let started = std::time::Instant::now();
    let out = lonely.exec(&[
        bin(),
        "agent",
        "--etcd",
        "http://198.18.200.250:2379",
        "--node-name",
        "x",
        "--node-ip",
        "198.18.200.99",
        "--etcd-timeout",
        "2",
        "--data-dir",
        "/tmp/nearhost-agent-unreachable",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach etcd at http://198.18.200.250:2379"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // VXLAN: peers reach a node's VTEP by its node IP, so a --node-ip that is
    // not the underlay's address is refused before anything is registered.
    let n = &c.nodes[0];
    let out = n.ns.exec(&[
        bin(),
        "agent",
        "--etcd",
        &ep,
        "--node-name",
        "vx",
        "--node-ip",
        "198.18.200.77",
        "--mode",
        "vxlan",
        "--vni",
        "9",
        "--underlay",
        "eth0",
        "--data-dir",
        "/tmp/nearhost-agent-vtep-mismatch",
        "--metrics-listen",
        "127.0.0.1:9465",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--node-ip")
            && err.contains(&format!("198.18.200.77 is not the VXLAN underlay's address {}", n.ip)),
        "{err}"
    );
    assert!(n.ns.links().iter().all(|l| l["ifname"] != "nhvx9"), "no VXLAN device was made");
}

#[test]
fn metrics_and_health() {
    let c = Cluster::new(1, 1, "routed");
    let n = &c.nodes[0];
    assert_eq!(n.http("/healthz").0, 200);
    assert_eq!(n.http("/readyz").0, 200);
    let (code, body) = n.http("/metrics");
    assert_eq!(code, 200);
    for m in [
        "nearhost_agent_blocks_owned",
        "nearhost_agent_addresses_in_use",
        "nearhost_agent_etcd_requests_total",
        "nearhost_agent_etcd_request_duration_seconds",
        "nearhost_agent_routes_programmed",
    ] {
        assert!(body.contains(m), "{m} missing from /metrics:\n{body}");
    }
    let ctr = Netns::new("c");
    add(&n.ns, "m1", &ctr, &n.conf("p1"));
    assert!(
        eventually(Duration::from_secs(5), || n.metric("nearhost_agent_addresses_in_use") >= 1.0)
    );
    // the metrics listener is on loopback only
    let st = c.etcd[0].ns.exec(&[
        "python3",
        "-c",
        &format!("import socket;socket.create_connection(('{}',9464),timeout=1)", n.ip),
    ]);
    assert!(!st.status.success(), "metrics must not be reachable from the network");
}

/// The agent exports the SR-IOV VF inventory: per PF how many VFs there are,
/// are free and are claimed, and which container holds each claimed one.
#[test]
fn the_agent_reports_the_sriov_vf_inventory() {
    let w = support::sriov::Wire::new(210);
    w.pf("pf0", 3, 4);
    w.host.ip(&["addr", "add", "198.18.210.2/24", "dev", "pf0"]);
    let etcd_data = tempfile::tempdir().unwrap();
    let etcd = std::process::Command::new("ip")
        .args(["netns", "exec", &w.sw.name, "etcd", "--name", "vfe"])
        .arg(format!("--data-dir={}", etcd_data.path().join("d").display()))
        .args([
            "--listen-client-urls=http://198.18.210.1:2379",
            "--advertise-client-urls=http://198.18.210.1:2379",
        ])
        .args([
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=vfe=http://127.0.0.1:2380",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("etcd");
    let _etcd = Proc { child: Some(etcd) };
    let healthy = || {
        w.sw.exec(&[
            "etcdctl", "--endpoints", "http://198.18.210.1:2379", "--dial-timeout=1s", "endpoint",
            "health",
        ])
        .status
        .success()
    };
    assert!(eventually(Duration::from_secs(30), healthy), "etcd did not start");
    let data = w.data.path().display().to_string();
    let sysfs = w.sysfs_root();
    let agent = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &w.host.name,
            "env",
            &format!("NEARHOST_SYSFS_ROOT={sysfs}"),
            &format!("NEARHOST_CLAIMS_DIR={}", w.claims_dir().display()),
            bin(),
            "agent",
        ])
        .args([
            "--etcd", "http://198.18.210.1:2379", "--etcd-timeout", "10", "--node-name", "vfnode",
            "--node-ip", "198.18.210.2", "--data-dir", &data,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(etcd_data.path().join("agent.log")).unwrap())
        .spawn()
        .expect("agent");
    let _agent = Proc { child: Some(agent) };
    let metrics = || w.host.http_get("http://127.0.0.1:9464/metrics").unwrap_or_default();
    let has = |needle: &str| eventually(Duration::from_secs(20), || metrics().contains(needle));
    let log = || std::fs::read_to_string(etcd_data.path().join("agent.log")).unwrap_or_default();
    assert!(
        has(r#"nearhost_agent_sriov_vfs{pf="pf0",state="enabled"} 4"#),
        "{}\nagent log:\n{}",
        metrics(),
        log()
    );
    assert!(has(r#"nearhost_agent_sriov_vfs{pf="pf0",state="free"} 4"#), "{}", metrics());

    let ctr = Netns::new("c");
    let conf = w.conf("vfnet", "sriov", serde_json::json!({"pf": "pf0"}));
    w.call("ADD", "vf-ctr-1", &ctr.path()).conf(&conf).expect_ok();
    assert!(has(r#"nearhost_agent_sriov_vfs{pf="pf0",state="claimed"} 1"#), "{}", metrics());
    assert!(has(r#"container="vf-ctr-1""#), "{}", metrics());
    assert!(has(r#"nearhost_agent_sriov_vfs{pf="pf0",state="free"} 3"#), "{}", metrics());
    w.call("DEL", "vf-ctr-1", &ctr.path()).conf(&conf).expect_ok();
    assert!(has(r#"nearhost_agent_sriov_vfs{pf="pf0",state="claimed"} 0"#), "{}", metrics());
    assert!(
        !metrics().contains("vf-ctr-1"),
        "a released VF's claim must disappear from the metrics"
    );
}

/// Records anyone with write access to etcd could forge never become routes
/// (the default route, the hosts' own network, a block under another's key,
/// a block of an unregistered node or at an address its node does not have),
/// and a pool record no `pool create` makes is refused, not a panic.
#[test]
fn forged_records_in_etcd_never_become_routes() {
    let c = Cluster::new(1, 2, "routed");
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let ctr2 = Netns::new("c");
    let real = block_of(&add(&n2.ns, "real", &ctr2, &n2.conf("p1")));
    assert!(eventually(Duration::from_secs(10), || routed_via(n1, &n2.ip).contains(&real)));
    let default_before: Vec<Value> =
        n1.ns.routes(false).into_iter().filter(|r| r["dst"] == "default").collect();

    let url = c.etcd[0].client_url();
    let put = |key: &str, value: Value| etcd_put(&c.etcd[0].ns, &url, key, &value.to_string());
    let block = |block: &str, node: &str, ip: &str| json!({"pool": "p1", "block": block, "node": node, "nodeIP": ip});
    put("/nearhost/blocks/p1/0.0.0.0_0", block("0.0.0.0/0", "node2", &n2.ip));
    put(&format!("/nearhost/blocks/p1/{NET}.0_24"), block(&format!("{NET}.0/24"), "node2", &n2.ip));
    put(
        "/nearhost/blocks/p1/198.19.15.0_26",
        block("198.19.15.0/26", "node2", &format!("{NET}.99")),
    );
    put("/nearhost/blocks/p1/198.19.14.0_26", block("198.19.14.64/26", "node2", &n2.ip));
    put(
        "/nearhost/blocks/p1/198.19.13.0_26",
        block("198.19.13.0/26", "ghost", &format!("{NET}.77")),
    );
    put(
        "/nearhost/pools/bad",
        json!({"name": "bad", "subnet": "198.19.64.0/20", "blockPrefix": 40}),
    );

    assert!(
        eventually(Duration::from_secs(10), || n1.metric("nearhost_agent_records_refused") == 5.0),
        "node1 refused {} records, not 5; log:\n{}",
        n1.metric("nearhost_agent_records_refused"),
        n1.agent_log()
    );
    assert_eq!(routed_via(n1, &n2.ip), HashSet::from([real.clone()]), "only the real block");
    for forged in [format!("{NET}.99"), format!("{NET}.77")] {
        assert!(routed_via(n1, &forged).is_empty(), "a route via {forged}");
    }
    let default_after: Vec<Value> =
        n1.ns.routes(false).into_iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default_after, default_before, "the default route was touched");
    assert!(n1.agent_log().contains("not routing block record /nearhost/blocks/p1/0.0.0.0_0"));

    // The bad pool: a clear error naming the record; the agent lives on.
    let ctr = Netns::new("c");
    Call::new(&n1.ns, "ADD", "bad1", &ctr.path(), "eth0")
        .conf(&n1.conf("bad"))
        .expect_err(7, "/nearhost/pools/bad");
    assert!(ctr.link_names().is_empty());
    assert_eq!(n1.http("/healthz").0, 200);
    assert_eq!(n1.http("/readyz").0, 200);
    let out = pool_cmd(&c.etcd[0].ns, &c.ep(), &["ls", "--json"]);
    let pools: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> =
        pools.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["p1"], "`pool ls` leaves the bad record out and still works");
}

/// An agent restarted after its node registration expired, but within the
/// blocks lease, carries on with its blocks: none was ever free to take.
#[test]
fn a_restart_past_the_session_ttl_keeps_every_block() {
    let (sw, etcd, ep) = etcd_with_pool(1, "p1", "198.19.0.0/20", 26);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::new(&sw, i, "routed")).collect();
    for n in &mut nodes {
        n.start_agent(&ep, &["--pool", "p1", "--block-lease-ttl", "30"]);
    }
    let mut c = Cluster { sw, etcd, nodes };
    let ctr = Netns::new("c");
    let r = add(&c.nodes[0].ns, "stay", &ctr, &c.nodes[0].conf("p1"));
    let block = block_of(&r);
    c.nodes[0].agent.kill();
    // The registration goes (and with it node2's route), the blocks stay.
    assert!(
        eventually(Duration::from_secs(10), || routed_via(&c.nodes[1], &c.nodes[0].ip).is_empty())
    );
    assert!(pool_usage(&c.etcd[0].ns, &ep, "p1").1.contains(&"node1".to_string()));
    c.nodes[0].start_agent(&ep, &["--pool", "p1", "--block-lease-ttl", "30"]);
    assert!(c.nodes[0].agent_log().contains("carrying on with blocks lease"));
    assert!(c.nodes[0].status()["lostBlocks"].as_array().unwrap().is_empty());
    assert!(eventually(Duration::from_secs(10), || routed_via(&c.nodes[1], &c.nodes[0].ip)
        .contains(&block)));
    let ctr2 = Netns::new("c");
    let r2 = add(&c.nodes[0].ns, "next", &ctr2, &c.nodes[0].conf("p1"));
    assert_eq!(block_of(&r2), block, "the same block serves the next container");
}

/// A node whose agent is gone for longer than the blocks lease hands out no
/// address (code 11): another node may hold its blocks by then. When one did
/// take them, the returning agent reports the addresses its containers still
/// use there, until they are gone.
#[test]
fn a_lapsed_hold_gives_no_address_and_a_lost_block_is_reported() {
    // One /26 block in the whole pool, so the second node must take that one.
    let (sw, etcd, ep) = etcd_with_pool(1, "p1", "198.19.0.0/26", 26);
    let mut n1 = Node::new(&sw, 1, "routed");
    let mut n2 = Node::new(&sw, 2, "routed");
    n1.start_agent(&ep, &["--pool", "p1", "--block-lease-ttl", "4"]);
    let c1 = Netns::new("c");
    let r1 = add(&n1.ns, "early", &c1, &n1.conf("p1"));
    let ip1 = result_ip(&r1, 0);

    n1.agent.kill();
    assert!(
        eventually(Duration::from_secs(15), || pool_usage(&etcd[0].ns, &ep, "p1").1.is_empty()),
        "node1's block outlived its blocks lease"
    );
    let late = Netns::new("c");
    Call::new(&n1.ns, "ADD", "late", &late.path(), "eth0")
        .conf(&n1.conf("p1"))
        .expect_err(11, "hold on its address blocks lapsed");
    assert!(late.link_names().is_empty());

    n2.start_agent(&ep, &["--pool", "p1"]);
    let c2 = Netns::new("c");
    add(&n2.ns, "other", &c2, &n2.conf("p1"));

    n1.start_agent(&ep, &["--pool", "p1"]);
    let lost = n1.status()["lostBlocks"].clone();
    assert_eq!(lost[0]["block"], "198.19.0.0/26", "{lost}");
    assert_eq!(lost[0]["holder"], "node2", "{lost}");
    assert_eq!(lost[0]["addresses"], json!([ip1]), "{lost}");
    assert!(eventually(Duration::from_secs(5), || n1
        .metric("nearhost_agent_lost_block_addresses")
        == 1.0));
    assert!(n1.agent_log().contains("is held by node node2"));
    // Nothing more from that block on node1.
    let again = Netns::new("c");
    let call = Call::new(&n1.ns, "ADD", "again", &again.path(), "eth0").conf(&n1.conf("p1"));
    assert!(!call.ok, "node1 handed out an address after losing its only block: {}", call.json);

    del(&n1.ns, "early", &c1.path(), &n1.conf("p1"), Some(&r1));
    assert!(
        eventually(Duration::from_secs(6), || n1.status()["lostBlocks"]
            .as_array()
            .is_some_and(|a| a.is_empty())),
        "the report outlived the container"
    );
    assert_eq!(n1.metric("nearhost_agent_lost_block_addresses"), 0.0);
}

/// Two networks drawing from one pool share the node's store: a GC of one
/// releases only its own stale reservations, never the other network's.
#[test]
fn gc_of_one_network_keeps_another_networks_addresses_in_the_same_pool() {
    let c = Cluster::new(1, 1, "routed");
    let n = &c.nodes[0];
    let on = |name: &str| {
        let mut conf = n.conf("p1");
        conf["name"] = json!(name);
        conf
    };
    let (a, b) = (Netns::new("c"), Netns::new("c"));
    let ra = add(&n.ns, "on-a", &a, &on("net-a"));
    let rb = add(&n.ns, "on-b", &b, &on("net-b"));
    let stale = Netns::new("c");
    add(&n.ns, "stale-a", &stale, &on("net-a"));

    let mut gc = on("net-a");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "on-a", "ifname": "eth0"}]);
    Call::new(&n.ns, "GC", "", "", "").conf(&gc).expect_ok();

    let check = |id: &str, ctr: &Netns, conf: &Value, prev: &Value| {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        Call::new(&n.ns, "CHECK", id, &ctr.path(), "eth0").conf(&c)
    };
    let kept = check("on-b", &b, &on("net-b"), &rb);
    assert!(kept.ok, "GC of net-a released net-b's address: {}", kept.json);
    assert!(check("on-a", &a, &on("net-a"), &ra).ok, "the valid attachment lost its address");
    let state = std::fs::read_to_string(n.data.path().join("pool-p1/state.json")).unwrap();
    let held: Value = serde_json::from_str(&state).unwrap();
    let owners: Vec<&str> = held["reservations"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|r| r["containerID"].as_str())
        .collect();
    assert!(!owners.contains(&"stale-a"), "the stale attachment is gone: {state}");
    assert_eq!(owners.len(), 2, "{state}");
}

/// Local users can open the metrics listener and root the plugin's socket:
/// neither lets them make the agent hold unbounded connections (file
/// descriptors) or read unbounded requests; the socket is root's alone.
#[test]
fn idle_connections_and_huge_requests_cannot_starve_the_agent() {
    let c = Cluster::new(1, 1, "routed");
    let n = &c.nodes[0];
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", n.agent.pid())).unwrap().count();
    let before = fds();
    let mut holder = std::process::Command::new("ip")
        .args(["netns", "exec", &n.ns.name, "python3", "-c"])
        .arg(
            "import socket,time\nheld=[]\nfor _ in range(1000):\n try: held.append(socket.create_connection(('127.0.0.1',9464),timeout=0.2))\n except OSError: pass\nprint(len(held),flush=True)\ntime.sleep(4)",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut held = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut held,
    )
    .unwrap();
    let during = fds();
    assert!(held.trim().parse::<u32>().unwrap() >= 500, "the holder got {held} connections");
    assert!(
        during <= before + nearhost_agent::metrics::MAX_CONNECTIONS + 8,
        "{held} idle connections took the agent from {before} to {during} descriptors"
    );
    let ctr = Netns::new("c");
    add(&n.ns, "busy", &ctr, &n.conf("p1"));
    let _ = support::KillOnDrop(holder);
    assert!(
        eventually(Duration::from_secs(15), || n.http("/healthz").0 == 200),
        "the metrics listener never came back"
    );

    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let sock = n.data.path().join("agent.sock");
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut huge = vec![b' '; 8192];
    huge.push(b'\n');
    let _ = s.write_all(&huge);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.contains("longer than 4096 bytes"), "{answer}");
    assert_eq!(n.status()["node"], "node1", "the agent still answers");
}
