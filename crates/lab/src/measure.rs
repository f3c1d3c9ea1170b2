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
}

impl Load {
    pub fn key(&self) -> String {
        match self {
            Load::Rr { size } => format!("rr-{size}B"),
            Load::Max { connections } => format!("max-{connections}c"),
            Load::Rate { fraction, .. } => format!("rate-{:.0}pct", fraction * 100.0),
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
        }
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

fn client_args(load: &Load, target: &str, t: &Timing) -> Vec<String> {
    let mut a: Vec<String> = vec!["bench".into()];
    match load {
        Load::Rr { size } => {
            a.extend([
                "rr".into(),
                "--request-size".into(),
                size.to_string(),
                "--response-size".into(),
                size.to_string(),
            ]);
        }
        // The rate levels are fractions of what the *open-loop* client can
        // push through the host path (a closed loop over many connections
        // gets more through than paced sending does on two CPUs).
        Load::Max { connections } => {
            a.extend([
                "rate".into(),
                "--rate".into(),
                "10000000".into(),
                "--connections".into(),
                connections.to_string(),
            ]);
        }
        Load::Rate { per_s, connections, .. } => {
            a.extend([
                "rate".into(),
                "--rate".into(),
                format!("{per_s:.0}"),
                "--connections".into(),
                connections.to_string(),
            ]);
        }
    }
    // No warm-up at saturation: the warm-up's own backlog would hold every
    // request of the window back (open loop: they count as unsent).
    let warmup = if matches!(load, Load::Max { .. }) { 0.0 } else { t.warmup_s };
    a.extend(["--target".into(), target.into(), "--duration".into(), format!("{}", t.duration_s)]);
    a.extend([
        "--warmup".into(),
        format!("{warmup}"),
        "--timeout".into(),
        "2".into(),
        "--json".into(),
    ]);
    if let Some(cpu) = t.client_cpu {
        a.extend(["--cpus".into(), cpu.to_string()]);
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
