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

pub struct Metrics {
    pub registry: Registry,
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
        let mut registry = Registry::with_prefix("nearhost_agent");
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
        registry.register(
            "etcd_requests",
            "etcd requests made, by operation",
            etcd_requests.clone(),
        );
        registry.register(
            "etcd_errors",
            "etcd requests that failed, by operation",
            etcd_errors.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "etcd request latency",
            etcd_latency.clone(),
        );
        registry.register(
            "blocks_owned",
            "address blocks this node holds, by pool",
            blocks_owned.clone(),
        );
        registry.register(
            "addresses_in_use",
            "addresses reserved in this node's blocks, by pool",
            addresses_in_use.clone(),
        );
        registry.register(
            "routes_programmed",
            "routes to other nodes' blocks in the kernel",
            routes_programmed.clone(),
        );
        registry.register("peers", "other nodes with blocks", peers.clone());
        registry.register(
            "records_refused",
            "block records in etcd not routed: not what a claim would write, or covering a node",
            records_refused.clone(),
        );
        registry.register(
            "lost_block_addresses",
            "addresses containers here still use in blocks another node has taken (each may be duplicated there)",
            lost_block_addresses.clone(),
        );
        registry.register(
            "sriov_vfs",
            "SR-IOV VFs per physical function, by state (total, enabled, free, claimed)",
            vfs.clone(),
        );
        registry.register(
            "sriov_vf_claim",
            "1 for every VF a container holds, labelled with the container",
            vf_claims.clone(),
        );
        Arc::new(Metrics {
            registry,
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

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
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
