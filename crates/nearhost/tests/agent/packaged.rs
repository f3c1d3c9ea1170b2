//! The agent as the packages run it: with only the capability its systemd
//! unit and its DaemonSet grant (CAP_NET_ADMIN), logging JSON lines
//! (`--log-format json`), and the Grafana dashboard shipped for its metrics.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::*;

/// CAP_NET_ADMIN's bit in /proc/PID/status's capability masks.
const CAP_NET_ADMIN: u64 = 1 << 12;

/// IPv6 host-gw, the path that needs the most of the agent: blocks from etcd,
/// routes to the other node, and IPv6 forwarding turned on per interface
/// (a sysctl under /proc/sys/net) where the other node's traffic arrives.
#[test]
fn the_agent_does_its_work_with_only_cap_net_admin_and_logs_json_lines() {
    let (sw, _etcd, ep) = etcd_with_pool(1, "p6", "2001:2:98::/112", 122);
    let mut nodes: Vec<Node> = (1..=2).map(|i| Node::new(&sw, i, "routed")).collect();
    // What nearhost-agent.service (CapabilityBoundingSet=, NoNewPrivileges=)
    // and the DaemonSet (drop ALL, add NET_ADMIN) leave the agent.
    let only_net_admin =
        ["setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--no-new-privs", "--"];
    for (i, n) in nodes.iter_mut().enumerate() {
        n.ip = format!("2001:2:97::{}", 11 + i);
        n.ns.ip(&["-6", "addr", "add", &format!("{}/64", n.ip), "dev", "eth0", "nodad"]);
        n.start_agent_under(&only_net_admin, &ep, &["--pool", "p6", "--log-format", "json"]);
    }
    for n in &nodes {
        let status = std::fs::read_to_string(format!("/proc/{}/status", n.agent.pid())).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .expect("CapEff");
        assert_eq!(eff, CAP_NET_ADMIN, "the agent runs with CAP_NET_ADMIN alone:\n{status}");
    }
    let ctrs: Vec<Netns> = (0..2).map(|_| Netns::new("c")).collect();
    let results: Vec<Value> = nodes
        .iter()
        .zip(&ctrs)
        .map(|(n, c)| add(&n.ns, &format!("cap-{}", n.name), c, &n.conf("p6")))
        .collect();
    let ip = result_ip(&results[1], 0);
    assert!(
        eventually(Duration::from_secs(10), || ctrs[0].ping(&ip)),
        "node1's container cannot reach node2's {ip}; node2's log:\n{}",
        nodes[1].agent_log()
    );
    assert!(nodes[0].metric("nearhost_agent_routes_programmed") >= 1.0);
    for (n, (c, r)) in nodes.iter().zip(ctrs.iter().zip(&results)) {
        del(&n.ns, &format!("cap-{}", n.name), &c.path(), &n.conf("p6"), Some(r));
    }

    // Every line of the log is one JSON object with a level and a message.
    let log: String = nodes.iter().map(Node::agent_log).collect();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(
        lines.iter().all(|v| v["level"].is_string() && v["fields"]["message"].is_string()),
        "{log}"
    );
    assert!(
        lines.iter().any(|v| v["level"] == "INFO"
            && v["fields"]["message"].as_str().is_some_and(|m| m.starts_with("claimed block"))),
        "the block claim is logged at info, the agent's default:\n{log}"
    );
    assert!(!log.contains('\x1b'), "escape codes in a log file");
    let warnings: Vec<&Value> = lines.iter().filter(|v| v["level"] != "INFO").collect();
    assert!(warnings.is_empty(), "the agent warned (a missing capability?): {warnings:?}");
}

/// The metric names `/metrics` exposes: each family's, with the suffixes its
/// type gets in the text format.
fn exposed(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in body.lines() {
        let mut w = l.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (w.next(), w.next(), w.next(), w.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

/// Every `nearhost_agent_*` name in any string of the dashboard (queries,
/// template variables, legends).
fn referenced(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let mut i = 0;
            while let Some(at) = s[i..].find("nearhost_agent_") {
                let start = i + at;
                let end = start
                    + b[start..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                out.insert(s[start..end].to_string());
                i = end;
            }
        }
        Value::Array(a) => a.iter().for_each(|x| referenced(x, out)),
        Value::Object(o) => o.values().for_each(|x| referenced(x, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_agent_exports_and_shows_them_all() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana/nearhost-agent.json");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("the dashboard is JSON");
    let c = Cluster::new(1, 1, "routed");
    let n = &c.nodes[0];
    let ctr = Netns::new("c");
    let r = add(&n.ns, "dash", &ctr, &n.conf("p1"));
    let (code, body) = n.http("/metrics");
    assert_eq!(code, 200);
    let exported = exposed(&body);
    assert!(exported.len() >= 13, "too few names parsed from /metrics:\n{body}");

    let mut used = BTreeSet::new();
    referenced(&dashboard, &mut used);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics the agent does not export: {unknown:?}\nexported: {exported:?}");
    // Every family has a panel (a histogram through its buckets).
    let families: BTreeSet<String> = exported
        .iter()
        .map(|m| {
            m.trim_end_matches("_sum")
                .trim_end_matches("_count")
                .trim_end_matches("_bucket")
                .to_string()
        })
        .collect();
    let shown: Vec<&String> =
        families.iter().filter(|f| !used.iter().any(|u| u.starts_with(f.as_str()))).collect();
    assert!(shown.is_empty(), "metrics without a panel in the dashboard: {shown:?}");
    del(&n.ns, "dash", &ctr.path(), &n.conf("p1"), Some(&r));
}
