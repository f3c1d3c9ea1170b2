//! Reading the reference tools' output (sockperf, iperf3, wrk) and printing
//! comparison lines, for the agreement and efficiency benchmarks.
#![allow(dead_code)] // each benchmark uses a different subset

use std::process::Command;

/// sockperf's `percentile P = V` line (µs; sockperf reports half the round
/// trip, so callers double it). `percentile` as printed, e.g. "50.000".
pub fn sockperf_percentile(output: &str, percentile: &str) -> Option<f64> {
    let marker = format!("percentile {percentile} =");
    let line = output.lines().find(|l| l.contains(&marker))?;
    line.split('=').nth(1)?.trim().parse().ok()
}

/// sockperf's `# dropped messages = N` count.
pub fn sockperf_dropped(output: &str) -> Option<u64> {
    let line = output.lines().find(|l| l.contains("# dropped messages ="))?;
    line.split("# dropped messages =").nth(1)?.split(';').next()?.trim().parse().ok()
}

/// (sent, received) of sockperf's `[Valid Duration]` line.
pub fn sockperf_valid_messages(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().find(|l| l.contains("[Valid Duration]"))?;
    let field = |name: &str| -> Option<u64> {
        line.split(&format!("{name}="))
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((field("SentMessages")?, field("ReceivedMessages")?))
}

/// (sender, receiver) bits per second of an `iperf3 -J` TCP run.
pub fn iperf3_tcp_bits(json: &str) -> Option<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let end = &v["end"];
    Some((
        end["sum_sent"]["bits_per_second"].as_f64()?,
        end["sum_received"]["bits_per_second"].as_f64()?,
    ))
}

/// Retransmitted segments of an `iperf3 -J` TCP run (its "Retr").
pub fn iperf3_retransmits(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["end"]["sum_sent"]["retransmits"].as_u64()
}

/// Loss in percent of an `iperf3 -u -J` run (measured at the receiver).
pub fn iperf3_udp_loss_percent(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["end"]["sum"]["lost_percent"].as_f64()
}

/// wrk's `Requests/sec:` figure.
pub fn wrk_requests_per_sec(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.trim_start().starts_with("Requests/sec:"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// Median of a non-empty list.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One comparison: a figure (a ratio, or a difference) and the range it
/// must fall in.
pub struct Check {
    pub name: String,
    pub ours: String,
    pub reference: String,
    /// What `value` is, e.g. "ratio" or "diff pp".
    pub metric: &'static str,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Check {
    /// A check on `ours / reference`.
    pub fn ratio(
        name: &str, ours: String, reference: String, value: f64, low: f64, high: f64,
    ) -> Check {
        Check { name: name.into(), ours, reference, metric: "ratio", value, low, high }
    }

    pub fn passed(&self) -> bool {
        self.value.is_finite() && self.value >= self.low && self.value <= self.high
    }

    /// The one summary line the benchmarks print per check.
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "OUT-OF-RANGE" };
        let high = if self.high.is_finite() { format!("{:.2}", self.high) } else { "inf".into() };
        format!(
            "CHECK {:<22} nearhost {:<22} | reference {:<30} | {} {:.3} (target {:.2}..{high}) | {verdict}",
            self.name, self.ours, self.reference, self.metric, self.value, self.low
        )
    }
}

/// CPU seconds (user + system) of all children waited for so far.
pub fn children_cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

/// Exits with a clear message unless `tool` runs (the benchmark cannot run
/// without it; it never pretends to have measured).
pub fn require_tool(tool: &str, version_arg: &str, package: &str) {
    match Command::new(tool).arg(version_arg).output() {
        Ok(_) => {}
        Err(e) => {
            eprintln!("cannot run: `{tool}` is not available ({e}); install it with `apt-get install {package}`");
            std::process::exit(2);
        }
    }
}

/// The load average line, printed next to results: this machine is shared,
/// and a busy neighbour explains a noisy round.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// `NAME` from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
