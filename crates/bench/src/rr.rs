//! `rr`: closed-loop TCP request/response (netperf TCP_RR semantics).
//!
//! Each connection keeps exactly one request in flight and sends the next
//! one as soon as the response is complete. Latency is the round trip from
//! the send of a request to the end of its response. Because a slow response
//! delays the requests behind it, a closed loop under-reports stalls
//! (coordinated omission); use `rate` for latency under a fixed load.

use std::net::SocketAddr;

use crate::common::{base_report, check_size, Common};
use crate::error::BenchError;
use crate::loadgen::{self, LoadSpec, ResponseKind};
use crate::proto::{TcpMode, MAX_MESSAGE};
use crate::report::{LatencyKind, LatencyOrigin, Mode, Report};

/// Settings of an `rr` run.
#[derive(Debug, Clone)]
pub struct RrConfig {
    /// A `nearhost bench serve` address.
    pub target: SocketAddr,
    /// Connections, threads, duration, warm-up, timeout, CPUs, progress.
    pub common: Common,
    /// Request size in bytes (1 ..= 16 MiB).
    pub request_size: u32,
    /// Response size in bytes (1 ..= 16 MiB).
    pub response_size: u32,
}

impl RrConfig {
    /// Defaults: 1 connection, 1-byte request and response, 1 s warm-up, 10 s.
    pub fn new(target: SocketAddr) -> Self {
        RrConfig {
            target,
            common: Common { warmup_s: 1.0, ..Common::default() },
            request_size: 1,
            response_size: 1,
        }
    }
}

/// Runs a closed-loop request/response measurement.
pub fn rr(config: &RrConfig) -> Result<Report, BenchError> {
    let common = &config.common;
    let threads = common.validate()?;
    check_size("--request-size", config.request_size, 1, MAX_MESSAGE)?;
    check_size("--response-size", config.response_size, 1, MAX_MESSAGE)?;
    let spec = LoadSpec {
        target: config.target,
        hello: Some(TcpMode::Echo {
            request_size: config.request_size,
            response_size: config.response_size,
        }),
        request: vec![0; config.request_size as usize],
        response: ResponseKind::Echo { size: config.response_size },
        pipeline: 1,
        connections: common.connections,
        threads,
        timeout: common.timeout(),
        rate_per_s: None,
    };
    let plan = common.plan(threads, "rr");
    let (out, timeline) = loadgen::run(spec, &plan)?;
    let mut settings = common.settings("echo", threads);
    settings.request_size = config.request_size;
    settings.response_size = config.response_size;
    settings.pipeline = Some(1);
    let mut report =
        base_report(Mode::Rr, config.target.to_string(), settings, out.counts, timeline);
    report.latency = out.hist.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime);
    Ok(report)
}
