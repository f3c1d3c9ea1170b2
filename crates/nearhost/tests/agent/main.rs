//! Multi-host: `nearhost agent` with real etcd (Debian's etcd-server), hosts
//! and etcd members in namespaces on one switch, containers attached through
//! the CNI protocol with `"ipam": {"type": "nearhost", "pool": …}`.

use nearhost_testkit as support;

use nearhost_testkit::agent as fixture;

use std::collections::HashSet;
use std::time::Duration;

use fixture::*;
use serde_json::Value;
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
