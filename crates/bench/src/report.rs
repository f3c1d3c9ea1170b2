//! The measurement report: what every mode returns and what `--json` prints.
//!
//! One [`Report`] type serves all modes; sections that do not apply to a mode
//! are `null` in JSON (`None` here). The schema is identified by
//! [`SCHEMA`]; fields are only ever added within one schema version.
//! All latencies are in microseconds (`*_us`, fractional, nanosecond
//! resolution), all durations in seconds (`*_s`), rates per second.

use serde::{Deserialize, Serialize};

/// Value of [`Report::schema`] for this version of the report format.
pub const SCHEMA: &str = "nearhost-bench/1";

/// Which measurement produced the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Closed-loop request/response (netperf TCP_RR).
    Rr,
    /// Open-loop constant-rate request/response (wrk2/tcpkali).
    Rate,
    /// UDP ping-pong or paced UDP load.
    Udp,
    /// TCP bulk throughput (iperf3).
    Stream,
}

/// What a latency figure spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyKind {
    /// Client → server → client: the full request/response round trip.
    RoundTrip,
    /// One direction only (needs synchronised clocks; not produced by any
    /// mode today, reserved so consumers can match on it).
    OneWay,
}

/// Where each latency sample starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyOrigin {
    /// From the moment the request was actually written (closed loop).
    SendTime,
    /// From the moment the fixed schedule intended to send it (open loop,
    /// coordinated-omission correct: client-side queueing is included).
    IntendedTime,
}

/// Direction of the bytes counted by a throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The client sends, the server discards (default `stream`).
    ClientToServer,
    /// The server sends, the client discards (`stream --reverse`).
    ServerToClient,
}

/// The complete result of one measurement run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The mode that ran.
    pub mode: Mode,
    /// The target address, as connected to.
    pub target: String,
    /// The settings the run used (after defaults were applied).
    pub settings: Settings,
    /// Length of the measured window in seconds (warm-up excluded).
    pub elapsed_s: f64,
    /// Completed transactions (responses, or echoed datagrams) per second
    /// within the measured window; 0 for `stream`.
    pub transactions_per_s: f64,
    /// Event counters over the measured window.
    pub counts: Counts,
    /// Latency distribution; `None` for `stream` and when nothing completed.
    /// Open-loop runs measure it from the intended send time.
    pub latency: Option<LatencySummary>,
    /// Open-loop runs only: the same responses measured from the moment each
    /// request was actually written — what a closed-loop tool would report.
    /// The gap to `latency` is time requests spent queued in the client
    /// (behind a busy connection, or a client that fell behind).
    pub latency_from_send: Option<LatencySummary>,
    /// Target vs achieved rate; only for open-loop runs (`rate`, `udp --rate`).
    pub rate: Option<RateSummary>,
    /// Bulk throughput; only for `stream`.
    pub throughput: Option<Throughput>,
    /// Datagram accounting; only for `udp`.
    pub udp: Option<UdpSummary>,
    /// One entry per second of the measured window, in order.
    pub timeline: Vec<Interval>,
}

/// Settings of a run, echoed so a report stands on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `echo`, `http`, `udp` or `stream`.
    pub protocol: String,
    /// Connections (TCP) or sockets (UDP) used.
    pub connections: u32,
    /// Client threads used.
    pub threads: u32,
    /// Requested measurement duration in seconds.
    pub duration_s: f64,
    /// Warm-up before the measured window, in seconds (not measured).
    pub warmup_s: f64,
    /// Request (or datagram, or write) size in bytes; 0 for HTTP (the request
    /// is a fixed `GET`).
    pub request_size: u32,
    /// Response size in bytes; 0 when the server decides (HTTP) or for `stream`.
    pub response_size: u32,
    /// Target rate for open-loop runs, per second.
    pub rate_per_s: Option<f64>,
    /// Maximum requests in flight per connection (open loop).
    pub pipeline: Option<u32>,
    /// Connect / response timeout in seconds.
    pub timeout_s: f64,
    /// CPUs the client threads were pinned to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// `stream --window`: the socket buffer (SO_SNDBUF and SO_RCVBUF) asked
    /// for on every connection, bytes; absent when the kernel autotunes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bytes: Option<u32>,
}

/// Counters over the measured window (plus the drain after it, for replies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests (or datagrams) written.
    pub requests_sent: u64,
    /// Responses (or echoed datagrams) received; each one is a latency sample.
    pub responses: u64,
    /// Transport and protocol errors: connect failures, resets, malformed or
    /// non-2xx/3xx HTTP responses. Events, not requests.
    pub errors: u64,
    /// Requests sent but still unanswered when the run ended plus the drain
    /// time (`--timeout`) ran out.
    pub timeouts: u64,
    /// Connections re-established during the run (server closed or reset).
    pub reconnects: u64,
    /// Payload bytes written by the client.
    pub bytes_sent: u64,
    /// Payload bytes read by the client.
    pub bytes_received: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.requests_sent += o.requests_sent;
        self.responses += o.responses;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.reconnects += o.reconnects;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
    }
}

/// Latency percentiles from an HDR histogram (3 significant digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// What the latency spans (always stated, never implied).
    pub kind: LatencyKind,
    /// Where each sample starts (send time or intended time).
    pub origin: LatencyOrigin,
    /// Number of samples.
    pub samples: u64,
    /// Samples above 60 s, recorded as 60 s.
    pub saturated: u64,
    /// Smallest sample, µs.
    pub min_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Standard deviation, µs.
    pub stddev_us: f64,
    /// 50th percentile, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p99_9_us: f64,
    /// 99.99th percentile, µs.
    pub p99_99_us: f64,
    /// 99.999th percentile, µs.
    pub p99_999_us: f64,
    /// Largest sample, µs (exact, not bucketed).
    pub max_us: f64,
}

/// Open-loop accounting: what the schedule asked for and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateSummary {
    /// The requested rate, per second.
    pub target_per_s: f64,
    /// Responses received within the window, per second.
    pub achieved_per_s: f64,
    /// Requests written within the window, per second.
    pub sent_per_s: f64,
    /// Requests the schedule intended within the window.
    pub requests_scheduled: u64,
    /// Scheduled requests never written because the connection was still
    /// busy (the server or the client could not keep up).
    pub unsent: u64,
    /// How late the client itself wrote requests relative to their intended
    /// times (scheduler wake-up and queueing), µs. Large values mean the
    /// client, not only the server, was behind.
    pub send_lag_p50_us: f64,
    /// 99th percentile of the send lag, µs.
    pub send_lag_p99_us: f64,
    /// Largest send lag, µs.
    pub send_lag_max_us: f64,
}

/// Bulk throughput of a `stream` run (one way: see `direction`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Which way the bytes flowed.
    pub direction: Direction,
    /// Bytes the client wrote (`client_to_server`) or read
    /// (`server_to_client`) within the measured window.
    pub client_bytes: u64,
    /// `client_bytes` as bits per second over the window.
    pub client_bits_per_s: f64,
    /// Bytes the receiving side got over the whole run, warm-up included
    /// (reported back by the server for `client_to_server`), if known.
    pub receiver_bytes: Option<u64>,
    /// `receiver_bytes` as bits per second, from the start of the load until
    /// the receiver had everything, if known.
    pub receiver_bits_per_s: Option<f64>,
    /// TCP segments the client's kernel retransmitted over the whole run
    /// (`client_to_server` only: the sender's count, like iperf3's "Retr").
    pub retransmits: Option<u64>,
}

/// Datagram accounting of a `udp` run. Loss is round-trip: a datagram counts
/// as lost if either the request or its echo was dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UdpSummary {
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct datagrams whose echo came back.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// `lost / sent` (0 when nothing was sent).
    pub loss_ratio: f64,
    /// Echoes that arrived after an echo of a later datagram.
    pub reordered: u64,
    /// Echoes received more than once.
    pub duplicates: u64,
}

/// One second of the measured window. Latency samples and bytes are
/// attributed to the second in which the response (or byte) arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Start of the interval, seconds from the start of the window.
    pub start_s: f64,
    /// End of the interval (the last one may be shorter than 1 s).
    pub end_s: f64,
    /// Responses completed in the interval.
    pub responses: u64,
    /// Errors in the interval.
    pub errors: u64,
    /// Payload bytes moved in the interval (sent + received by the client).
    pub bytes: u64,
    /// `responses / (end_s - start_s)`.
    pub per_s: f64,
    /// `8 * bytes / (end_s - start_s)`.
    pub bits_per_s: f64,
    /// Median latency of the interval, µs (2 significant digits), if any.
    pub p50_us: Option<f64>,
    /// 99th percentile of the interval, µs (2 significant digits), if any.
    pub p99_us: Option<f64>,
    /// Largest latency of the interval, µs, if any.
    pub max_us: Option<f64>,
}

impl Report {
    /// Parses the output of `nearhost bench ... --json`. Floats round-trip
    /// exactly: `Report::from_json(&r.to_json())` equals `r`.
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The report as pretty-printed JSON (what `--json` prints).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            schema: SCHEMA.into(),
            mode: Mode::Rate,
            target: "127.0.0.1:7000".into(),
            settings: Settings {
                protocol: "echo".into(),
                connections: 10,
                threads: 2,
                duration_s: 10.0,
                warmup_s: 0.0,
                request_size: 1,
                response_size: 1,
                rate_per_s: Some(1000.0),
                pipeline: Some(1),
                timeout_s: 5.0,
                cpus: vec![0, 1],
                window_bytes: None,
            },
            elapsed_s: 10.0,
            transactions_per_s: 999.5,
            counts: Counts {
                requests_sent: 10_000,
                responses: 9_995,
                timeouts: 5,
                ..Counts::default()
            },
            latency: Some(LatencySummary {
                kind: LatencyKind::RoundTrip,
                origin: LatencyOrigin::IntendedTime,
                samples: 9_995,
                saturated: 0,
                min_us: 10.5,
                mean_us: 20.0,
                stddev_us: 3.0,
                p50_us: 19.0,
                p90_us: 25.0,
                p99_us: 900_000.0,
                p99_9_us: 1_000_000.0,
                p99_99_us: 1_000_000.0,
                p99_999_us: 1_000_000.0,
                max_us: 1_001_000.5,
            }),
            rate: Some(RateSummary {
                target_per_s: 1000.0,
                achieved_per_s: 999.5,
                sent_per_s: 1000.0,
                requests_scheduled: 10_000,
                unsent: 0,
                send_lag_p50_us: 3.0,
                send_lag_p99_us: 9.0,
                send_lag_max_us: 50.0,
            }),
            latency_from_send: None,
            throughput: None,
            udp: None,
            timeline: vec![Interval {
                start_s: 0.0,
                end_s: 1.0,
                responses: 1000,
                errors: 0,
                bytes: 2000,
                per_s: 1000.0,
                bits_per_s: 16000.0,
                p50_us: Some(19.0),
                p99_us: None,
                max_us: Some(40.0),
            }],
        }
    }

    #[test]
    fn json_round_trip_preserves_every_field() {
        let report = sample();
        let back = Report::from_json(&report.to_json()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn awkward_floats_round_trip_exactly() {
        let mut report = sample();
        let mut x = 0.123_456_789_f64;
        for _ in 0..2000 {
            x = (x * 3.7 + 0.1).fract() * 1e6 + 1e-9;
            report.elapsed_s = x;
            report.latency.as_mut().unwrap().mean_us = x / 7.0;
            report.transactions_per_s = 1.0 / x;
            assert_eq!(Report::from_json(&report.to_json()).unwrap(), report, "x = {x:e}");
        }
    }

    #[test]
    fn json_uses_documented_names() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(value["schema"], "nearhost-bench/1");
        assert_eq!(value["mode"], "rate");
        assert_eq!(value["latency"]["kind"], "round_trip");
        assert_eq!(value["latency"]["origin"], "intended_time");
        assert_eq!(value["latency"]["p99_999_us"], 1_000_000.0);
        assert_eq!(value["rate"]["target_per_s"], 1000.0);
        assert!(value["throughput"].is_null());
        assert!(value["timeline"][0]["p99_us"].is_null());
    }
}
