//! `rate`: open-loop constant-rate request/response (wrk2/tcpkali semantics).
//!
//! Requests follow a fixed schedule (see [`crate::schedule`]) dealt
//! round-robin over the connections. A request that cannot be sent on time
//! because its connection is still busy waits in the client, but keeps its
//! intended time: its latency is measured from that time, so a stalled
//! server shows in the percentiles instead of silently lowering the rate.

use std::net::SocketAddr;

use crate::common::{base_report, check_size, Common};
use crate::error::BenchError;
use crate::http;
use crate::loadgen::{self, LoadSpec, ResponseKind};
use crate::proto::{TcpMode, MAX_MESSAGE};
use crate::report::{LatencyKind, LatencyOrigin, Mode, RateSummary, Report};

/// Highest rate accepted, per second.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Most requests in flight per connection.
pub const MAX_PIPELINE: u32 = 1024;

/// What the requests are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateProtocol {
    /// The bench echo protocol against `nearhost bench serve`.
    Echo {
        /// Request size in bytes.
        request_size: u32,
        /// Response size in bytes.
        response_size: u32,
    },
    /// `GET path` over HTTP/1.1 keep-alive against any HTTP server.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// `Host` header; `None` uses the target address.
        host: Option<String>,
    },
}

/// Settings of a `rate` run.
#[derive(Debug, Clone)]
pub struct RateConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Connections, threads, duration, warm-up, timeout, CPUs, progress.
    pub common: Common,
    /// Requests per second, across all connections.
    pub rate_per_s: f64,
    /// Most requests in flight per connection (1 = wait for each response,
    /// like wrk2; more = pipelining).
    pub pipeline: u32,
    /// Echo or HTTP.
    pub protocol: RateProtocol,
}

impl RateConfig {
    /// Defaults: 1000/s over 1 connection, no pipelining, echo of 1 byte, 10 s.
    pub fn new(target: SocketAddr) -> Self {
        RateConfig {
            target,
            common: Common::default(),
            rate_per_s: 1000.0,
            pipeline: 1,
            protocol: RateProtocol::Echo { request_size: 1, response_size: 1 },
        }
    }
}

/// Runs an open-loop constant-rate measurement.
pub fn rate(config: &RateConfig) -> Result<Report, BenchError> {
    let common = &config.common;
    let threads = common.validate()?;
    if !(config.rate_per_s >= 0.001 && config.rate_per_s <= MAX_RATE) {
        return Err(BenchError::invalid(
            "--rate",
            config.rate_per_s,
            format!("must be 0.001..={MAX_RATE} per second"),
        ));
    }
    if config.pipeline == 0 || config.pipeline > MAX_PIPELINE {
        return Err(BenchError::invalid(
            "--pipeline",
            config.pipeline,
            format!("must be 1..={MAX_PIPELINE}"),
        ));
    }
    let (hello, request, response, protocol) = protocol_parts(config)?;
    let mut settings = common.settings(protocol, threads);
    if let RateProtocol::Echo { request_size, response_size } = config.protocol {
        settings.request_size = request_size;
        settings.response_size = response_size;
    }
    settings.rate_per_s = Some(config.rate_per_s);
    settings.pipeline = Some(config.pipeline);
    let spec = LoadSpec {
        target: config.target,
        hello,
        request,
        response,
        pipeline: config.pipeline,
        connections: common.connections,
        threads,
        timeout: common.timeout(),
        rate_per_s: Some(config.rate_per_s),
    };
    let plan = common.plan(threads, "rate");
    let (out, timeline) = loadgen::run(spec, &plan)?;
    let mut report =
        base_report(Mode::Rate, config.target.to_string(), settings, out.counts, timeline);
    report.latency = out.hist.summary(LatencyKind::RoundTrip, LatencyOrigin::IntendedTime);
    report.latency_from_send =
        out.from_send.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime);
    let lag = |q: f64| if out.send_lag.is_empty() { 0.0 } else { out.send_lag.quantile_us(q) };
    report.rate = Some(RateSummary {
        target_per_s: config.rate_per_s,
        achieved_per_s: report.transactions_per_s,
        sent_per_s: out.counts.requests_sent as f64 / common.duration_s,
        requests_scheduled: out.scheduled,
        unsent: out.scheduled.saturating_sub(out.counts.requests_sent),
        send_lag_p50_us: lag(0.5),
        send_lag_p99_us: lag(0.99),
        send_lag_max_us: if out.send_lag.is_empty() { 0.0 } else { out.send_lag.max_us() },
    });
    Ok(report)
}

type Parts = (Option<TcpMode>, Vec<u8>, ResponseKind, &'static str);

/// The hello, the request bytes, the response framing and the protocol name.
fn protocol_parts(config: &RateConfig) -> Result<Parts, BenchError> {
    match &config.protocol {
        RateProtocol::Echo { request_size, response_size } => {
            check_size("--request-size", *request_size, 1, MAX_MESSAGE)?;
            check_size("--response-size", *response_size, 1, MAX_MESSAGE)?;
            if u64::from(*request_size) * u64::from(config.pipeline) > u64::from(MAX_MESSAGE) * 4 {
                return Err(BenchError::invalid(
                    "--pipeline",
                    config.pipeline,
                    "pipeline × request size must stay within 64 MiB",
                ));
            }
            let mode = TcpMode::Echo { request_size: *request_size, response_size: *response_size };
            Ok((
                Some(mode),
                vec![0; *request_size as usize],
                ResponseKind::Echo { size: *response_size },
                "echo",
            ))
        }
        RateProtocol::Http { path, host } => {
            let host = host.clone().unwrap_or_else(|| config.target.to_string());
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(BenchError::invalid(
                    "--path",
                    path,
                    "must start with / and contain no spaces",
                ));
            }
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(BenchError::invalid(
                    "--host",
                    &host,
                    "must be a non-empty host name without spaces",
                ));
            }
            Ok((None, http::build_request(&host, path), ResponseKind::Http, "http"))
        }
    }
}
