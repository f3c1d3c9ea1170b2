//! The bodies of nearhost's fuzz targets, one function per untrusted input.
//! `fuzz/` runs them under libFuzzer (`scripts/fuzz`); the test suite runs
//! them over the corpus kept in `fuzz/corpus/` (`tests/corpus.rs`). Each must
//! return for any input, never panic, and hold its invariants (asserted).
//!
//! | target | input | trust boundary |
//! | --- | --- | --- |
//! | `netconf` | a network config on stdin | the runtime's or user's config |
//! | `cni_env` | `CNI_*` variables, `KEY=VALUE` lines | the runtime's environment, `CNI_ARGS` from users |
//! | `prev_result` | a `prevResult` / delegated IPAM result | other plugins' output |
//! | `agent_protocol` | one line on the agent's socket, either way | local clients, the agent's answer |
//! | `etcd_records` | etcd keys and values, `KEY\0VALUE\0…` | anything with write access to etcd |

use std::collections::HashMap;

use ipnet::IpNet;
use nearhost_agent::watch::{self, Protected};
use nearhost_cni::netconf::NetConf;
use nearhost_cni::result;
use nearhost_cni::version::SUPPORTED;
use nearhost_cni::Invocation;
use nearhost_ipam::agent_client::{Request, Response};
use serde_json::Value;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("netconf", netconf),
    ("cni_env", cni_env),
    ("prev_result", prev_result),
    ("agent_protocol", agent_protocol),
    ("etcd_records", etcd_records),
];

/// The network config as the plugin reads it: parsed, its datapath built and
/// its embedded IPAM section parsed; every refusal is a CNI error, not a panic.
pub fn netconf(data: &[u8]) {
    let Ok(conf) = NetConf::parse(data) else { return };
    let _ = nearhost_datapath::build(&conf.raw);
    if let Some(ipam) = &conf.ipam {
        if let Ok(cfg) = nearhost_ipam::IpamConfig::parse(ipam) {
            for set in &cfg.range_sets {
                for r in &set.ranges {
                    assert!(r.subnet.contains(&r.start) && r.subnet.contains(&r.end), "{r:?}");
                }
            }
        }
    }
    if let Some(prev) = &conf.prev_result {
        let _ = result::decode("prevResult", prev);
    }
    let _ = conf.valid_attachments();
}

/// `CNI_*` variables, one `KEY=VALUE` per line.
pub fn cni_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    if let Ok(inv) = Invocation::from_env(|k| vars.get(k).map(|v| v.to_string())) {
        assert!(inv.validate().is_ok(), "a parsed invocation validates");
    }
}

/// A result from another plugin: decoded, then encoded in every version and
/// decoded again to the same addresses.
pub fn prev_result(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let Ok((outcome, dns)) = result::decode("prevResult", &v) else { return };
    for version in SUPPORTED {
        let encoded = result::encode(*version, &outcome, "/run/netns/x", dns.as_ref());
        let (again, _) = result::decode("prevResult", &encoded)
            .unwrap_or_else(|e| panic!("{} re-encoding does not decode: {e}", version.as_str()));
        let ips = |o: &nearhost_datapath::Outcome| {
            o.ips.iter().map(|i| i.address).collect::<Vec<IpNet>>()
        };
        assert_eq!(ips(&again), ips(&outcome), "{}", version.as_str());
    }
}

/// One line on the agent's socket: a request (agent side) or a response
/// (plugin side); what decodes re-encodes to the same thing.
pub fn agent_protocol(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        let back: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let back: Response = serde_json::from_str(&serde_json::to_string(&resp).unwrap()).unwrap();
        assert_eq!(back.ok, resp.ok);
        assert_eq!(back.code, resp.code);
    }
}

/// etcd's records as a node lists them: no record, however forged, gives a
/// default route or a route over the node network or a node's address.
pub fn etcd_records(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let mut records = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if let Ok(key) = std::str::from_utf8(k) {
            records.push((key, v));
        }
    }
    let lan: IpNet = "198.18.0.0/24".parse().unwrap();
    let protected = Protected { me: "me".into(), networks: vec![lan] };
    let desired = watch::desired_from(records, &protected);
    for (node, blocks) in &desired {
        for b in blocks {
            assert!(b.prefix_len() > 0, "a default route via {node}");
            assert!(!lan.contains(&b.network()) && !b.contains(&lan.network()), "{b} via {node}");
            assert!(!b.contains(node), "{b} covers its own node {node}");
        }
    }
}
