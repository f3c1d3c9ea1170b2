//! `udp`: UDP round-trip latency and loss against the `serve` UDP echo.
//!
//! Without `--rate` it is ping-pong (sockperf ping-pong): each socket sends a
//! datagram and waits for its echo (or the timeout) before the next; latency
//! is measured from the actual send. With `--rate` it is paced load
//! (sockperf under-load, iperf3 -u): datagrams leave on a fixed schedule
//! whatever comes back, latency is measured from the intended send time, and
//! loss, reordering and duplicates are counted. Loss is round trip: a
//! datagram is lost if it or its echo was dropped.

mod paced;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{now_ns, sleep_until};
use crate::common::{base_report, check_size, Common};
use crate::error::BenchError;
use crate::hist::LatencyHistogram;
use crate::proto::{get_seq, put_seq, MAX_DATAGRAM, MIN_DATAGRAM};
use crate::rate::MAX_RATE;
use crate::report::{
    Counts, Interval, LatencyKind, LatencyOrigin, Mode, RateSummary, Report, UdpSummary,
};
use crate::run::{run_threads, Window, WorkerCtx};
use crate::schedule::Schedule;
use crate::seq::{Arrival, SeqTracker};
use crate::timeline::SecondRecorder;

/// Sequence number of the reachability probe (never used by the run).
const PROBE_SEQ: u64 = u64::MAX;
/// Most sockets in ping-pong mode (one thread each).
const MAX_PING_PONG_SOCKETS: u32 = 256;

/// Settings of a `udp` run.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// A `nearhost bench serve` address (its UDP echo).
    pub target: SocketAddr,
    /// `connections` = UDP sockets; `timeout_s` = how long an echo may take
    /// before the datagram counts as lost.
    pub common: Common,
    /// Datagram payload size in bytes (16 ..= 65507).
    pub size: u32,
    /// `None`: ping-pong. `Some(rate)`: paced load, datagrams per second
    /// across all sockets.
    pub rate_per_s: Option<f64>,
}

impl UdpConfig {
    /// Defaults: ping-pong, 1 socket, 64-byte datagrams, 1 s timeout, 10 s.
    pub fn new(target: SocketAddr) -> Self {
        UdpConfig {
            target,
            common: Common { timeout_s: 1.0, ..Common::default() },
            size: 64,
            rate_per_s: None,
        }
    }
}

/// One thread's results.
#[derive(Default)]
struct UdpOutput {
    hist: Option<LatencyHistogram>,
    from_send: Option<LatencyHistogram>,
    send_lag: Option<LatencyHistogram>,
    sent: u64,
    received: u64,
    errors: u64,
    duplicates: u64,
    reordered: u64,
    bytes_sent: u64,
    bytes_received: u64,
    scheduled: u64,
}

/// What one thread needs to account arrivals.
struct Tally {
    window: Window,
    recorder: SecondRecorder,
    out: UdpOutput,
    hist: LatencyHistogram,
    /// Paced load only: latency from the actual send.
    from_send: LatencyHistogram,
    /// Paced load: the schedule and the sockets' global indices, to recover
    /// each datagram's intended time from its sequence number.
    schedule: Option<(Schedule, Vec<u32>)>,
    trackers: Vec<SeqTracker>,
}

impl Tally {
    /// Accounts an echo that arrived on local socket `local` at `now`.
    fn echo(&mut self, local: usize, data: &[u8], now: u64) {
        let Some((seq, sent_at)) = get_seq(data) else { return };
        if seq == PROBE_SEQ || self.trackers[local].record(seq) != Arrival::New {
            return;
        }
        let origin = match &self.schedule {
            Some((schedule, ids)) => schedule.intended_ns(ids[local], seq),
            None => sent_at,
        };
        if self.window.contains(origin) {
            let latency = now.saturating_sub(origin);
            self.hist.record(latency);
            if self.schedule.is_some() {
                self.from_send.record(now.saturating_sub(sent_at));
            }
            self.out.received += 1;
            self.out.bytes_received += data.len() as u64;
            self.recorder.response(now, latency);
            self.recorder.bytes(now, data.len() as u64);
        }
    }

    fn sent(&mut self, origin: u64, now: u64, bytes: usize) {
        if self.window.contains(origin) {
            self.out.sent += 1;
            self.out.bytes_sent += bytes as u64;
            self.recorder.bytes(now, bytes as u64);
        }
    }

    fn error(&mut self, now: u64) {
        if self.window.contains(now) {
            self.out.errors += 1;
        }
        self.recorder.error(now);
    }

    fn finish(mut self) -> UdpOutput {
        for t in &self.trackers {
            self.out.duplicates += t.duplicates;
            self.out.reordered += t.reordered;
        }
        self.out.hist = Some(self.hist);
        self.out.from_send = Some(self.from_send);
        self.recorder.finish();
        self.out
    }
}

/// Runs a UDP measurement.
pub fn udp(config: &UdpConfig) -> Result<Report, BenchError> {
    let common = &config.common;
    let mut threads = common.validate()?;
    check_size("--size", config.size, MIN_DATAGRAM, MAX_DATAGRAM)?;
    if let Some(rate) = config.rate_per_s {
        if !(0.001..=MAX_RATE).contains(&rate) {
            return Err(BenchError::invalid(
                "--rate",
                rate,
                format!("must be 0.001..={MAX_RATE} per second"),
            ));
        }
    } else {
        // Ping-pong blocks in recv, so every socket gets its own thread.
        if common.connections > MAX_PING_PONG_SOCKETS {
            return Err(BenchError::invalid(
                "--connections",
                common.connections,
                format!("ping-pong uses one thread per socket: at most {MAX_PING_PONG_SOCKETS} (or use --rate)"),
            ));
        }
        threads = common.connections as usize;
    }
    let plan = common.plan(threads, "udp");
    let shared = Arc::new((config.clone(), threads));
    let (outputs, timeline) = run_threads(&plan, move |ctx| {
        let (config, threads) = &*shared;
        udp_thread(config, *threads, ctx)
    })?;
    let mut total = UdpOutput::default();
    let mut hist = Histograms::default();
    for o in outputs {
        hist.merge(&o);
        total.sent += o.sent;
        total.received += o.received;
        total.errors += o.errors;
        total.duplicates += o.duplicates;
        total.reordered += o.reordered;
        total.bytes_sent += o.bytes_sent;
        total.bytes_received += o.bytes_received;
        total.scheduled += o.scheduled;
    }
    Ok(assemble(config, threads, total, hist, timeline))
}

/// The run-wide histograms, merged over threads.
struct Histograms {
    latency: LatencyHistogram,
    from_send: LatencyHistogram,
    send_lag: LatencyHistogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            latency: LatencyHistogram::new(),
            from_send: LatencyHistogram::new(),
            send_lag: LatencyHistogram::new(),
        }
    }
}

impl Histograms {
    fn merge(&mut self, o: &UdpOutput) {
        o.hist.iter().for_each(|h| self.latency.merge(h));
        o.from_send.iter().for_each(|h| self.from_send.merge(h));
        o.send_lag.iter().for_each(|h| self.send_lag.merge(h));
    }
}

fn assemble(
    config: &UdpConfig, threads: usize, total: UdpOutput, hist: Histograms, timeline: Vec<Interval>,
) -> Report {
    let send_lag = &hist.send_lag;
    let lost = total.sent.saturating_sub(total.received);
    let counts = Counts {
        requests_sent: total.sent,
        responses: total.received,
        errors: total.errors,
        timeouts: lost,
        reconnects: 0,
        bytes_sent: total.bytes_sent,
        bytes_received: total.bytes_received,
    };
    let mut settings = config.common.settings("udp", threads);
    settings.request_size = config.size;
    settings.response_size = config.size;
    settings.rate_per_s = config.rate_per_s;
    let mut report = base_report(Mode::Udp, config.target.to_string(), settings, counts, timeline);
    let origin = if config.rate_per_s.is_some() {
        LatencyOrigin::IntendedTime
    } else {
        LatencyOrigin::SendTime
    };
    report.latency = hist.latency.summary(LatencyKind::RoundTrip, origin);
    if config.rate_per_s.is_some() {
        report.latency_from_send =
            hist.from_send.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime);
    }
    report.udp = Some(UdpSummary {
        sent: total.sent,
        received: total.received,
        lost,
        loss_ratio: if total.sent == 0 { 0.0 } else { lost as f64 / total.sent as f64 },
        reordered: total.reordered,
        duplicates: total.duplicates,
    });
    if let Some(rate) = config.rate_per_s {
        let lag = |q: f64| if send_lag.is_empty() { 0.0 } else { send_lag.quantile_us(q) };
        report.rate = Some(RateSummary {
            target_per_s: rate,
            achieved_per_s: report.transactions_per_s,
            sent_per_s: total.sent as f64 / config.common.duration_s,
            requests_scheduled: total.scheduled,
            // Datagrams never queue; only a client that fell behind at the
            // very end of the window leaves some unsent.
            unsent: total.scheduled.saturating_sub(total.sent),
            send_lag_p50_us: lag(0.5),
            send_lag_p99_us: lag(0.99),
            send_lag_max_us: if send_lag.is_empty() { 0.0 } else { send_lag.max_us() },
        });
    }
    report
}

/// Opens a connected UDP socket and checks that the echo answers.
fn open_socket(
    target: SocketAddr, timeout: Duration, size: usize,
) -> Result<UdpSocket, BenchError> {
    let io_err = |what: &str, e| BenchError::io(format!("{what} a UDP socket for {target}"), e);
    let local: SocketAddr =
        if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(local).map_err(|e| io_err("binding", e))?;
    sock.connect(target).map_err(|e| crate::net::connect_error(target, timeout, e))?;
    sock.set_read_timeout(Some(timeout)).map_err(|e| io_err("configuring", e))?;
    crate::net::enlarge_udp_buffer(&sock);
    let mut probe = vec![0u8; size];
    put_seq(&mut probe, PROBE_SEQ, 0);
    let deadline = now_ns() + timeout.as_nanos() as u64;
    sock.send(&probe).map_err(|e| crate::net::connect_error(target, timeout, e))?;
    let mut buf = vec![0u8; MAX_DATAGRAM as usize];
    while now_ns() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) if get_seq(&buf[..n]).map(|(s, _)| s) == Some(PROBE_SEQ) => return Ok(sock),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                break
            }
            Err(e) => return Err(crate::net::connect_error(target, timeout, e)),
        }
    }
    Err(BenchError::NoUdpReply { addr: target, timeout_s: timeout.as_secs_f64() })
}

fn udp_thread(config: &UdpConfig, threads: usize, ctx: WorkerCtx) -> Result<UdpOutput, BenchError> {
    let ids: Vec<u32> =
        (0..config.common.connections).filter(|c| *c as usize % threads == ctx.index).collect();
    let timeout = config.common.timeout();
    let setup = ids
        .iter()
        .map(|_| open_socket(config.target, timeout, config.size as usize))
        .collect::<Result<Vec<_>, _>>();
    let (sockets, window, recorder) = ctx.ready(setup)?;
    let tally = Tally {
        window,
        recorder,
        out: UdpOutput::default(),
        hist: LatencyHistogram::new(),
        from_send: LatencyHistogram::new(),
        schedule: None,
        trackers: ids.iter().map(|_| SeqTracker::default()).collect(),
    };
    match config.rate_per_s {
        None => ping_pong(&sockets[0], config, tally),
        Some(rate) => paced::Paced::new(sockets, ids, rate, config, tally)?.run(),
    }
}

/// One datagram in flight: send, wait for its echo or the timeout, repeat.
fn ping_pong(
    sock: &UdpSocket, config: &UdpConfig, mut tally: Tally,
) -> Result<UdpOutput, BenchError> {
    let timeout_ns = config.common.timeout().as_nanos() as u64;
    let mut buf = vec![0u8; config.size as usize];
    let mut rbuf = vec![0u8; MAX_DATAGRAM as usize];
    sleep_until(tally.window.start_ns);
    let mut seq = 0;
    loop {
        let sent_at = now_ns();
        if sent_at >= tally.window.end_ns {
            break;
        }
        put_seq(&mut buf, seq, sent_at);
        seq += 1;
        if sock.send(&buf).is_err() {
            tally.error(sent_at);
            continue;
        }
        tally.sent(sent_at, sent_at, buf.len());
        // Wait for this echo; older (late) echoes are accounted on the way.
        while now_ns() < sent_at + timeout_ns {
            match sock.recv(&mut rbuf) {
                Ok(n) => {
                    let now = now_ns();
                    tally.echo(0, &rbuf[..n], now);
                    if get_seq(&rbuf[..n]).map(|(s, _)| s) == Some(seq - 1) {
                        break;
                    }
                }
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    tally.error(now_ns()); // e.g. ICMP port unreachable: the server went away
                    break;
                }
            }
        }
    }
    Ok(tally.finish())
}
