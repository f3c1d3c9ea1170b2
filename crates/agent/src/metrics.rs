//! Prometheus metrics and the health endpoints, served on `--metrics-listen`
//! (127.0.0.1 by default) by a small HTTP/1.1 server: `/metrics`, `/healthz`
//! (the process runs), `/readyz` (it holds an etcd session and its blocks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabel {
    pub pool: String,
    pub block: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VfCountLabel {
    pub pf: String,
    /// `total` (sriov_totalvfs), `enabled` (sriov_numvfs), `free` or `claimed`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VfClaimLabel {
    pub pf: String,
    pub vf: String,
    pub pci: String,
    pub container: String,
    pub ifname: String,
}

/// A registered family's name (without the prefix), help and type: what
/// `/metrics` describes even before the family has a series.
struct Descriptor {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
}

pub struct Metrics {
    pub registry: Registry,
    descriptors: Vec<Descriptor>,
    pub etcd_requests: Family<OpLabel, Counter>,
    pub etcd_errors: Family<OpLabel, Counter>,
    pub etcd_latency: Histogram,
    pub blocks_owned: Family<PoolLabel, Gauge>,
    pub addresses_in_use: Family<PoolLabel, Gauge>,
    pub routes_programmed: Gauge,
    pub peers: Gauge,
    pub records_refused: Gauge,
    pub lost_block_addresses: Family<BlockLabel, Gauge>,
    pub vfs: Family<VfCountLabel, Gauge>,
    pub vf_claims: Family<VfClaimLabel, Gauge>,
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let mut descriptors = Vec::new();
        let etcd_requests = Family::<OpLabel, Counter>::default();
        let etcd_errors = Family::<OpLabel, Counter>::default();
        let etcd_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let blocks_owned = Family::<PoolLabel, Gauge>::default();
        let addresses_in_use = Family::<PoolLabel, Gauge>::default();
        let routes_programmed = Gauge::default();
        let peers = Gauge::default();
        let records_refused = Gauge::default();
        let lost_block_addresses = Family::<BlockLabel, Gauge>::default();
        let vfs = Family::<VfCountLabel, Gauge>::default();
        let vf_claims = Family::<VfClaimLabel, Gauge>::default();
        reg(
            &mut registry,
            &mut descriptors,
            "etcd_requests",
            "etcd requests made, by operation",
            etcd_requests.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "etcd_errors",
            "etcd requests that failed, by operation",
            etcd_errors.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "etcd_request_duration_seconds",
            "etcd request latency",
            etcd_latency.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "blocks_owned",
            "address blocks this node holds, by pool",
            blocks_owned.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "addresses_in_use",
            "addresses reserved in this node's blocks, by pool",
            addresses_in_use.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "routes_programmed",
            "routes to other nodes' blocks in the kernel",
            routes_programmed.clone(),
        );
        reg(&mut registry, &mut descriptors, "peers", "other nodes with blocks", peers.clone());
        reg(
            &mut registry,
            &mut descriptors,
            "records_refused",
            "block records in etcd not routed: not what a claim would write, or covering a node",
            records_refused.clone(),
        );
        reg(&mut registry, &mut descriptors, "lost_block_addresses", "addresses containers here still use in blocks another node has taken (each may be duplicated there)", lost_block_addresses.clone());
        reg(
            &mut registry,
            &mut descriptors,
            "sriov_vfs",
            "SR-IOV VFs per physical function, by state (total, enabled, free, claimed)",
            vfs.clone(),
        );
        reg(
            &mut registry,
            &mut descriptors,
            "sriov_vf_claim",
            "1 for every VF a container holds, labelled with the container",
            vf_claims.clone(),
        );
        Arc::new(Metrics {
            registry,
            descriptors,
            etcd_requests,
            etcd_errors,
            etcd_latency,
            blocks_owned,
            addresses_in_use,
            routes_programmed,
            peers,
            records_refused,
            lost_block_addresses,
            vfs,
            vf_claims,
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The exposition. Families with no series yet (no VF claimed, no block
    /// lost) are still described by their HELP and TYPE lines, so scrapers
    /// and dashboards know every name the agent exports from the first scrape.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        let mut missing = String::new();
        for d in &self.descriptors {
            let full = format!("{PREFIX}_{}", d.name);
            if !out.contains(&format!("# TYPE {full} ")) {
                missing.push_str(&format!(
                    "# HELP {full} {}.\n# TYPE {full} {}\n",
                    d.help,
                    d.kind.as_str()
                ));
            }
        }
        out.insert_str(eof, &missing);
        out
    }
}

/// Every family's name starts with this.
const PREFIX: &str = "nearhost_agent";

/// Registers a family and keeps its descriptor.
fn reg<M: prometheus_client::registry::Metric + TypedMetric>(
    registry: &mut Registry, descriptors: &mut Vec<Descriptor>, name: &'static str,
    help: &'static str, metric: M,
) {
    descriptors.push(Descriptor { name, help, kind: M::TYPE });
    registry.register(name, help, metric);
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// Connections served at once; more wait in the kernel's backlog, costing the
/// agent no file descriptor.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves forever. One request per connection, at most [`MAX_CONNECTIONS`]
/// at a time, each given 5 s to send it.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("never closed");
        let mut sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // EMFILE and the like: wait rather than spin on them.
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = vec![0u8; 2048];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let reply = match path {
                "/metrics" => response(
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    &metrics.encode(),
                ),
                "/healthz" => response("200 OK", "text/plain", "ok\n"),
                "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
                    response("200 OK", "text/plain", "ready\n")
                }
                "/readyz" => response(
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready: no etcd session or no blocks yet\n",
                ),
                _ => response("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n"),
            };
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_before_it_has_a_series() {
        let m = Metrics::new();
        let text = m.encode();
        for (name, kind) in [
            ("etcd_requests", "counter"),
            ("etcd_errors", "counter"),
            ("etcd_request_duration_seconds", "histogram"),
            ("lost_block_addresses", "gauge"),
            ("sriov_vfs", "gauge"),
            ("sriov_vf_claim", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE nearhost_agent_{name} {kind}\n")),
                "{name}:\n{text}"
            );
        }
        assert_eq!(text.matches("# TYPE ").count(), 11, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Once a family has a series it is described once, by the encoder.
        m.vfs.get_or_create(&VfCountLabel { pf: "pf0".into(), state: "free".into() }).set(2);
        let text = m.encode();
        assert_eq!(text.matches("# TYPE nearhost_agent_sriov_vfs gauge").count(), 1, "{text}");
        assert!(text.contains("nearhost_agent_sriov_vfs{pf=\"pf0\",state=\"free\"} 2"), "{text}");
    }
}
