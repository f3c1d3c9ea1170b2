//! One measurement: a `nearhost bench` client run inside the client namespace
//! against the server in the server namespace, its JSON report parsed.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::time::Duration;

use nearhost_bench::Report;
use nearhost_kernel::process::Process;

use crate::error::{LabError, Result};
use crate::exec;
use crate::signals::StopFlag;
use crate::workload::Workload;

/// The files nginx serves in the `http` workload (the Kubernetes CNI study's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HttpFile {
    /// A 100-byte body: about 350 bytes with nginx's headers.
    Small,
    /// A 4 KB body.
    Large,
}

impl HttpFile {
    pub const ALL: [HttpFile; 2] = [HttpFile::Small, HttpFile::Large];

    /// The path nginx serves it under, and the key's part.
    pub fn name(self) -> &'static str {
        match self {
            HttpFile::Small => "350B",
            HttpFile::Large => "4KB",
        }
    }

    pub fn body_bytes(self) -> usize {
        match self {
            HttpFile::Small => 100,
            HttpFile::Large => 4096,
        }
    }

    fn label(self) -> &'static str {
        match self {
            HttpFile::Small => "350 B response (100 B body + nginx's headers)",
            HttpFile::Large => "4 KB file",
        }
    }
}

/// Which server a load talks to in the server namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `nearhost bench serve`: TCP echo/sink and UDP echo.
    Bench,
    /// nginx.
    Nginx,
}

/// The figure a load is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Round-trip percentiles.
    #[default]
    Latency,
    /// Requests per second at saturation.
    MaxRate,
    /// Bits per second.
    Throughput,
    /// Echoed datagrams per second.
    PacketRate,
    /// Share of datagrams lost at a fixed rate.
    Loss,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop, one connection, `size`-byte requests and responses.
    Rr { size: u32 },
    /// Open loop far above what the path carries, over `connections`: the
    /// maximum rate the open-loop client sustains (calibration).
    Max { connections: u32 },
    /// Open loop at `per_s` over `connections` (`fraction` of the host's max).
    Rate { fraction: f64, per_s: f64, connections: u32 },
    /// nginx's maximum for `file`: open loop far above it, keep-alive.
    HttpMax { file: HttpFile },
    /// nginx at `per_s` (`fraction` of the host's maximum for `file`).
    Http { file: HttpFile, fraction: f64, per_s: f64 },
    /// UDP ping-pong, `size`-byte datagrams.
    Udp { size: u32 },
    /// Paced UDP at `per_s`: loss (and latency from the intended time).
    UdpLoss { size: u32, per_s: f64 },
    /// TCP bulk, client → server, with this socket buffer (None: autotuned).
    Stream { window: Option<u32> },
    /// Smallest datagrams, as fast as the path echoes them, over `streams` sockets.
    Pps { streams: u32 },
}

/// A byte count the way people write buffer sizes: 16K, 1M.
fn bytes(n: u32) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

impl Load {
    pub fn key(&self) -> String {
        match self {
            Load::Rr { size } => format!("rr-{size}B"),
            Load::Max { connections } => format!("max-{connections}c"),
            Load::Rate { fraction, .. } => format!("rate-{:.0}pct", fraction * 100.0),
            Load::HttpMax { file } => format!("http-{}-max", file.name()),
            Load::Http { file, fraction, .. } => {
                format!("http-{}-{:.0}pct", file.name(), fraction * 100.0)
            }
            Load::Udp { size } => format!("udp-{size}B"),
            Load::UdpLoss { size, per_s } => format!("udp-loss-{size}B-{per_s:.0}ps"),
            Load::Stream { window: Some(w) } => format!("stream-{}", bytes(*w)),
            Load::Stream { window: None } => "stream-auto".into(),
            Load::Pps { streams } => format!("pps-{streams}s"),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Load::Rr { size } => format!(
                "request/response, {size} byte{}, 1 connection (closed loop)",
                if *size == 1 { "" } else { "s" }
            ),
            Load::Max { connections } => {
                format!("maximum rate, {connections} connections (open loop at saturation)")
            }
            Load::Rate { fraction, per_s, connections } => {
                format!("{:.0}% of the host's maximum: {per_s:.0} req/s over {connections} connections (open loop)", fraction * 100.0)
            }
            Load::HttpMax { file } => format!(
                "nginx, {}: maximum rate over {} keep-alive connections",
                file.label(),
                crate::workload::RATE_CONNECTIONS
            ),
            Load::Http { file, fraction, per_s } => format!(
                "nginx, {}: {:.0}% of the host's maximum, {per_s:.0} req/s over {} keep-alive connections (open loop)",
                file.label(),
                fraction * 100.0,
                crate::workload::RATE_CONNECTIONS
            ),
            Load::Udp { size } => format!("UDP round trip, {size}-byte datagrams (ping-pong)"),
            Load::UdpLoss { size, per_s } => {
                format!("UDP loss, {size}-byte datagrams paced at {per_s:.0}/s (round trip)")
            }
            Load::Stream { window: Some(w) } => {
                format!("TCP throughput, {} socket buffer (iperf3 -w {})", bytes(*w), bytes(*w))
            }
            Load::Stream { window: None } => {
                "TCP throughput, socket buffers autotuned by the kernel".into()
            }
            Load::Pps { streams } => format!(
                "{}-byte datagrams echoed per second, {streams} stream{}",
                crate::workload::PPS_SIZE,
                if *streams == 1 { "" } else { "s" }
            ),
        }
    }

    pub fn workload(&self) -> Workload {
        match self {
            Load::Rr { .. } => Workload::Rr,
            Load::Max { .. } | Load::Rate { .. } => Workload::Rate,
            Load::HttpMax { .. } | Load::Http { .. } => Workload::Http,
            Load::Udp { .. } | Load::UdpLoss { .. } => Workload::Udp,
            Load::Stream { .. } => Workload::Stream,
            Load::Pps { .. } => Workload::Pps,
        }
    }

    pub fn metric(&self) -> Metric {
        match self {
            Load::Max { .. } | Load::HttpMax { .. } => Metric::MaxRate,
            Load::Stream { .. } => Metric::Throughput,
            Load::Pps { .. } => Metric::PacketRate,
            Load::UdpLoss { .. } => Metric::Loss,
            _ => Metric::Latency,
        }
    }

    pub fn service(&self) -> Service {
        match self {
            Load::HttpMax { .. } | Load::Http { .. } => Service::Nginx,
            _ => Service::Bench,
        }
    }

    /// The open-loop rate asked for, when the figure should be held to it.
    pub fn target_per_s(&self) -> Option<f64> {
        match self {
            Load::Rate { per_s, .. } | Load::Http { per_s, .. } | Load::UdpLoss { per_s, .. } => {
                Some(*per_s)
            }
            _ => None,
        }
    }

    /// Saturating runs get no warm-up: the warm-up's own backlog would hold
    /// every request of the window back (open loop: they count as unsent).
    fn saturates(&self) -> bool {
        matches!(self, Load::Max { .. } | Load::HttpMax { .. } | Load::Pps { .. })
    }
}

/// Timing of one client run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Pin the client to this CPU (the server gets another).
    pub client_cpu: Option<usize>,
}

/// A rate far above anything the lab's paths carry (saturation runs).
const SATURATE: &str = "10000000";

fn client_args(load: &Load, target: &str, t: &Timing) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let connections = crate::workload::RATE_CONNECTIONS.to_string();
    let mut a = s(&["bench"]);
    match load {
        Load::Rr { size } => {
            let size = size.to_string();
            a.extend(s(&["rr", "--request-size", &size, "--response-size", &size]));
        }
        // The rate levels are fractions of what the *open-loop* client can
        // push through the host path (a closed loop over many connections
        // gets more through than paced sending does on two CPUs).
        Load::Max { connections } => {
            a.extend(s(&["rate", "--rate", SATURATE, "--connections", &connections.to_string()]))
        }
        Load::Rate { per_s, connections, .. } => a.extend(s(&[
            "rate",
            "--rate",
            &format!("{per_s:.0}"),
            "--connections",
            &connections.to_string(),
        ])),
        Load::HttpMax { file } => a.extend(s(&[
            "rate",
            "--http",
            "--path",
            &format!("/{}", file.name()),
            "--rate",
            SATURATE,
            "--connections",
            &connections,
        ])),
        Load::Http { file, per_s, .. } => a.extend(s(&[
            "rate",
            "--http",
            "--path",
            &format!("/{}", file.name()),
            "--rate",
            &format!("{per_s:.0}"),
            "--connections",
            &connections,
        ])),
        Load::Udp { size } => a.extend(s(&["udp", "--size", &size.to_string()])),
        Load::UdpLoss { size, per_s } => {
            a.extend(s(&["udp", "--size", &size.to_string(), "--rate", &format!("{per_s:.0}")]))
        }
        Load::Stream { window } => {
            a.extend(s(&["stream"]));
            if let Some(w) = window {
                a.extend(s(&["--window", &w.to_string()]));
            }
        }
        Load::Pps { streams } => a.extend(s(&[
            "udp",
            "--size",
            &crate::workload::PPS_SIZE.to_string(),
            "--rate",
            &format!("{:.0}", crate::workload::PPS_TARGET_PER_S),
            "--connections",
            &streams.to_string(),
        ])),
    }
    let warmup = if load.saturates() { 0.0 } else { t.warmup_s };
    a.extend(s(&["--target", target, "--duration", &format!("{}", t.duration_s)]));
    a.extend(s(&["--warmup", &format!("{warmup}"), "--timeout", "2", "--json"]));
    if let Some(cpu) = t.client_cpu {
        a.extend(s(&["--cpus", &cpu.to_string()]));
    }
    a
}

/// Runs the client; a raised stop flag kills it at once.
pub fn run(ns: &str, target: &str, load: &Load, t: &Timing, stop: &StopFlag) -> Result<Report> {
    let mut child = exec::spawn_in(ns, &client_args(load, target, t), false)?;
    let status = wait_or_stop(&mut child, stop)?;
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    if !status.success() {
        return Err(LabError::Bench {
            datapath: ns.into(),
            kind: load.key(),
            msg: err.trim().to_string(),
        });
    }
    Report::from_json(&out).map_err(|e| LabError::Bench {
        datapath: ns.into(),
        kind: load.key(),
        msg: format!("unreadable report: {e}"),
    })
}

fn wait_or_stop(child: &mut Child, stop: &StopFlag) -> Result<std::process::ExitStatus> {
    loop {
        if let Some(st) = child.try_wait().map_err(|e| LabError::io("wait for bench client", e))? {
            return Ok(st);
        }
        if stop.raised() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `nearhost bench serve` in `ns` (detached: it outlives us when the lab
/// is kept) and waits until it listens.
pub fn start_server(ns: &str, port: u16, cpu: Option<usize>) -> Result<Process> {
    let mut args: Vec<String> = ["bench", "serve", "--listen"].map(String::from).to_vec();
    args.extend([format!("0.0.0.0:{port}"), "--threads".into(), "1".into(), "--json".into()]);
    if let Some(c) = cpu {
        args.extend(["--cpus".into(), c.to_string()]);
    }
    let mut child = exec::spawn_in(ns, &args, true)?;
    let server = Process::of(child.id());
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let read = BufReader::new(stdout).read_line(&mut line);
    if read.is_err() || !line.contains("listening") {
        let mut err = String::new();
        child.stderr.take().map(|mut s| s.read_to_string(&mut err));
        let _ = child.kill();
        let _ = child.wait();
        return Err(LabError::Other(format!("bench server in {ns} did not start: {}", err.trim())));
    }
    // The server's stdout/stderr pipes close with these handles; it writes
    // nothing more until it exits.
    server.ok_or_else(|| {
        LabError::Other(format!("bench server in {ns} exited right after it started"))
    })
}
