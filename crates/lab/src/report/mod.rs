//! The demo's results: per measurement and datapath, every round's figures, the
//! median across rounds, and the ratio to the host baseline with its spread.
//! Rendered as a terminal table, JSON, and a self-contained HTML page.

pub mod html;
pub mod svg;
pub mod table;

use serde::{Deserialize, Serialize};

pub use crate::measure::Metric;
use crate::plan::Dp;
pub use crate::workload::Workload;

pub const SCHEMA: &str = "nearhost-demo/1";

/// JSON has no NaN: serde_json writes a missing figure (a throughput run's
/// latency, a ratio to a zero) as `null`; reading it back gives NaN again,
/// and a field a report from an older nearhost lacks is NaN too.
mod nan {
    use serde::{Deserialize, Deserializer};

    pub fn nan() -> f64 {
        f64::NAN
    }

    pub fn or_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// The figures of one client run; NaN where the run has no such figure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Figures {
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p50_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p90_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p99_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p99_9_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p99_99_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub p99_999_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub max_us: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub transactions_per_s: f64,
    /// `stream`: the receiver's rate, else the sender's.
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub bits_per_s: f64,
    /// `udp`: share of datagrams whose round trip failed.
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub loss_ratio: f64,
    pub errors: u64,
    pub timeouts: u64,
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            p50_us: f64::NAN,
            p90_us: f64::NAN,
            p99_us: f64::NAN,
            p99_9_us: f64::NAN,
            p99_99_us: f64::NAN,
            p99_999_us: f64::NAN,
            max_us: f64::NAN,
            transactions_per_s: f64::NAN,
            bits_per_s: f64::NAN,
            loss_ratio: f64::NAN,
            errors: 0,
            timeouts: 0,
        }
    }
}

impl Figures {
    pub fn from_report(r: &nearhost_bench::Report) -> Figures {
        let l = r.latency.as_ref();
        let g =
            |f: fn(&nearhost_bench::report::LatencySummary) -> f64| l.map(f).unwrap_or(f64::NAN);
        Figures {
            p50_us: g(|l| l.p50_us),
            p90_us: g(|l| l.p90_us),
            p99_us: g(|l| l.p99_us),
            p99_9_us: g(|l| l.p99_9_us),
            p99_99_us: g(|l| l.p99_99_us),
            p99_999_us: g(|l| l.p99_999_us),
            max_us: g(|l| l.max_us),
            transactions_per_s: r.transactions_per_s,
            bits_per_s: r
                .throughput
                .as_ref()
                .map(|t| t.receiver_bits_per_s.unwrap_or(t.client_bits_per_s))
                .unwrap_or(f64::NAN),
            loss_ratio: r.udp.as_ref().map(|u| u.loss_ratio).unwrap_or(f64::NAN),
            errors: r.counts.errors,
            timeouts: r.counts.timeouts,
        }
    }

    /// The percentile curve: (percentile, µs) for p50 … p99.999.
    pub fn curve(&self) -> [(f64, f64); 6] {
        [
            (50.0, self.p50_us),
            (90.0, self.p90_us),
            (99.0, self.p99_us),
            (99.9, self.p99_9_us),
            (99.99, self.p99_99_us),
            (99.999, self.p99_999_us),
        ]
    }
}

/// Median and spread (min, max) across rounds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Spread {
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub median: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub min: f64,
    #[serde(default = "nan::nan", deserialize_with = "nan::or_null")]
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread { median: f64::NAN, min: f64::NAN, max: f64::NAN };
        }
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Spread { median, min: v[0], max: v[v.len() - 1] }
    }
}

/// Ratio of a datapath to the host, per round, summarised.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Ratios {
    pub p50: Spread,
    pub p99: Spread,
    pub p99_9: Spread,
    pub p99_99: Spread,
    pub transactions_per_s: Spread,
    #[serde(default)]
    pub bits_per_s: Spread,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatapathResult {
    pub datapath: Dp,
    pub rounds: Vec<Figures>,
    /// Per-figure median across rounds.
    pub median: Figures,
    /// None for the host itself.
    pub ratio_to_host: Option<Ratios>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// The workload it belongs to (reports before workloads: from the key).
    #[serde(default)]
    pub workload: Workload,
    /// The figure it is judged by.
    #[serde(default)]
    pub metric: Metric,
    pub key: String,
    pub label: String,
    /// Open-loop target rate, when there is one.
    pub target_per_s: Option<f64>,
    pub results: Vec<DatapathResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatapathInfo {
    pub datapath: Dp,
    pub description: String,
    pub available: bool,
    pub reason: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub quick: bool,
    pub rounds: u32,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rate_connections: u32,
    pub client_cpu: Option<usize>,
    pub server_cpu: Option<usize>,
    /// The workloads measured (reports before workloads: rr and rate).
    #[serde(default = "default_workloads")]
    pub workloads: Vec<Workload>,
}

fn default_workloads() -> Vec<Workload> {
    crate::workload::DEFAULT.to_vec()
}

/// What `nearhost doctor` and `nearhost tune status` say about the machine
/// the lab ran on (gathered by the command line, which knows both).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostSummary {
    pub cpus: usize,
    pub numa_nodes: usize,
    /// Link kinds probed in a scratch namespace: (kind, "yes" / "module" / "no: why").
    pub links: Vec<(String, String)>,
    pub bpffs_mounted: bool,
    pub irqbalance_running: bool,
    pub conntrack_loaded: bool,
    pub rp_filter: Option<String>,
    /// What doctor found in the way of the lowest latency.
    pub in_the_way: Vec<String>,
    /// `nearhost tune status`, in one line.
    pub tuning: String,
}

impl HostSummary {
    /// The kinds the kernel makes, and those it does not, in one line.
    pub fn links_line(&self) -> String {
        let (yes, no): (Vec<_>, Vec<_>) =
            self.links.iter().partition(|(_, s)| !s.starts_with("no"));
        let names = |v: &[&(String, String)]| {
            v.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(" ")
        };
        if no.is_empty() {
            names(&yes)
        } else {
            format!("{} (not: {})", names(&yes), names(&no))
        }
    }

    /// CPUs, links, the things doctor checks, and the tuning: one line.
    pub fn line(&self) -> String {
        format!(
            "{} CPUs, {} NUMA node{}; links {}; irqbalance {}, conntrack {}, rp_filter {}; {}",
            self.cpus,
            self.numa_nodes,
            if self.numa_nodes == 1 { "" } else { "s" },
            self.links_line(),
            if self.irqbalance_running { "running" } else { "not running" },
            if self.conntrack_loaded { "loaded" } else { "not loaded" },
            self.rp_filter.as_deref().unwrap_or("?"),
            self.tuning
        )
    }
}

/// The lab hosts' sysctls in one line, `name=value` (once when every host
/// has the same values, as they do unless something tuned one).
pub fn lab_hosts_line(hosts: &[LabHostTuning]) -> Option<String> {
    let first = hosts.first()?;
    let kv = |h: &LabHostTuning| {
        h.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    };
    Some(if hosts.iter().all(|h| h.sysctls == first.sysctls) {
        format!(
            "{}: {}",
            hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>().join(", "),
            kv(first)
        )
    } else {
        hosts.iter().map(|h| format!("{}: {}", h.host, kv(h))).collect::<Vec<_>>().join("; ")
    })
}

/// One lab host's tuning: the values of tune's sysctls read inside its
/// namespace (per-namespace for `net.*`; the others are the machine's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHostTuning {
    pub host: String,
    /// (sysctl, value); a sysctl this kernel lacks is left out.
    pub sysctls: Vec<(String, String)>,
}

/// One workload's part of the report: what the study found and what this
/// run found, over its measurements (those with the same `workload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadSection {
    pub workload: Workload,
    pub title: String,
    /// What the study it reruns measured and found.
    pub study: String,
    /// What this run found: one line per measurement.
    pub found: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoReport {
    pub schema: String,
    pub kernel: String,
    pub hostname: String,
    pub started_unix: u64,
    pub wall_time_s: f64,
    pub settings: Settings,
    /// The host baseline's maximum open-loop echo rate (the `rate` levels
    /// are fractions of it); absent when `rate` was not measured.
    pub host_max_per_s: Option<f64>,
    /// The host's nginx maximum per file (`http` levels are fractions of it).
    #[serde(default)]
    pub host_http_max_per_s: std::collections::BTreeMap<String, f64>,
    /// The machine: doctor's summary and its tuning state (absent in
    /// reports from before it was recorded).
    #[serde(default)]
    pub host: Option<HostSummary>,
    /// The lab hosts' tuning, read in their namespaces.
    #[serde(default)]
    pub lab_hosts: Vec<LabHostTuning>,
    pub datapaths: Vec<DatapathInfo>,
    #[serde(default)]
    pub workloads: Vec<WorkloadSection>,
    pub measurements: Vec<Measurement>,
}

impl DemoReport {
    /// Reads a saved report.json (also one written before workloads existed).
    pub fn from_json(text: &str) -> serde_json::Result<DemoReport> {
        let mut r: DemoReport = serde_json::from_str(text)?;
        for m in &mut r.measurements {
            if m.key.starts_with("rate-") {
                m.workload = Workload::Rate;
            }
        }
        if r.workloads.is_empty() {
            r.workloads = sections(&r.settings.workloads, &r.measurements);
        }
        Ok(r)
    }

    /// The measurements of one workload, in report order.
    pub fn of(&self, w: Workload) -> impl Iterator<Item = &Measurement> {
        self.measurements.iter().filter(move |m| m.workload == w)
    }
}

impl Measurement {
    /// The figure the measurement is judged by, from one datapath's figures.
    pub fn headline(&self, f: &Figures) -> f64 {
        match self.metric {
            Metric::Latency => f.p50_us,
            Metric::MaxRate | Metric::PacketRate => f.transactions_per_s,
            Metric::Throughput => f.bits_per_s,
            Metric::Loss => f.loss_ratio,
        }
    }

    /// That figure's ratio to the host (none for loss: the host's is often 0).
    pub fn headline_ratio(&self, r: &Ratios) -> Option<Spread> {
        match self.metric {
            Metric::Latency => Some(r.p50),
            Metric::MaxRate | Metric::PacketRate => Some(r.transactions_per_s),
            Metric::Throughput => Some(r.bits_per_s),
            Metric::Loss => None,
        }
    }

    /// The headline as a person reads it, with its unit.
    pub fn headline_text(&self, f: &Figures) -> String {
        let v = self.headline(f);
        let n = |v: f64| figure(v).unwrap_or_else(|| "–".into());
        match self.metric {
            Metric::Latency => format!("p50 {} µs, p99 {} µs", n(f.p50_us), n(f.p99_us)),
            Metric::MaxRate => format!("{} req/s", n(v)),
            Metric::PacketRate => format!("{} echoes/s", n(v)),
            Metric::Throughput => format!("{} Gbit/s", gbit(v)),
            Metric::Loss => loss(v),
        }
    }

    /// "host …; bridge 1.21×, routed 1.05×, …": one line for the findings.
    pub fn finding(&self) -> String {
        let mut parts = Vec::new();
        for r in &self.results {
            let text = match (&r.ratio_to_host, r.datapath) {
                (_, Dp::Host) => format!("host {}", self.headline_text(&r.median)),
                (Some(rt), _) => match self.headline_ratio(rt) {
                    Some(s) if s.median.is_finite() => {
                        format!("{} {:.2}×", r.datapath.name(), s.median)
                    }
                    _ => format!("{} {}", r.datapath.name(), self.headline_text(&r.median)),
                },
                (None, _) => format!("{} {}", r.datapath.name(), self.headline_text(&r.median)),
            };
            parts.push(text);
        }
        let what = match self.metric {
            Metric::Latency => "p50 vs host",
            Metric::MaxRate | Metric::PacketRate => "rate vs host",
            Metric::Throughput => "throughput vs host",
            Metric::Loss => "loss",
        };
        format!("{} ({what}): {}", self.key, parts.join(", "))
    }
}

/// Bits per second as Gbit/s with three significant figures.
pub(crate) fn gbit(bits: f64) -> String {
    if !bits.is_finite() {
        return "–".into();
    }
    let g = bits / 1e9;
    if g >= 10.0 {
        format!("{g:.1}")
    } else {
        format!("{g:.2}")
    }
}

/// A loss ratio as a percentage.
pub(crate) fn loss(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "–".into();
    }
    format!("{:.3}% lost", ratio * 100.0)
}

/// The report's workload sections, in the order of [`crate::workload::ALL`].
pub fn sections(workloads: &[Workload], measurements: &[Measurement]) -> Vec<WorkloadSection> {
    crate::workload::ALL
        .iter()
        .filter(|w| workloads.contains(w))
        .map(|&w| WorkloadSection {
            workload: w,
            title: w.title().into(),
            study: w.study().into(),
            found: measurements.iter().filter(|m| m.workload == w).map(|m| m.finding()).collect(),
        })
        .collect()
}

/// Median of each figure across rounds.
pub fn median_figures(rounds: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| Spread::of(&rounds.iter().map(f).collect::<Vec<_>>()).median;
    Figures {
        p50_us: m(|f| f.p50_us),
        p90_us: m(|f| f.p90_us),
        p99_us: m(|f| f.p99_us),
        p99_9_us: m(|f| f.p99_9_us),
        p99_99_us: m(|f| f.p99_99_us),
        p99_999_us: m(|f| f.p99_999_us),
        max_us: m(|f| f.max_us),
        transactions_per_s: m(|f| f.transactions_per_s),
        bits_per_s: m(|f| f.bits_per_s),
        loss_ratio: m(|f| f.loss_ratio),
        errors: rounds.iter().map(|f| f.errors).sum(),
        timeouts: rounds.iter().map(|f| f.timeouts).sum(),
    }
}

/// Per-round ratios of `dp` to `host` (same round, same measurement).
pub fn ratios(dp: &[Figures], host: &[Figures]) -> Ratios {
    let r = |f: fn(&Figures) -> f64| {
        Spread::of(&dp.iter().zip(host).map(|(d, h)| f(d) / f(h)).collect::<Vec<_>>())
    };
    Ratios {
        p50: r(|f| f.p50_us),
        p99: r(|f| f.p99_us),
        p99_9: r(|f| f.p99_9_us),
        p99_99: r(|f| f.p99_99_us),
        transactions_per_s: r(|f| f.transactions_per_s),
        bits_per_s: r(|f| f.bits_per_s),
    }
}

/// A figure for a person: thousands separated from 1,000 up, no decimals
/// from 100 up, one decimal below; `None` when there is none (not finite).
pub(crate) fn figure(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    Some(if v >= 1000.0 {
        let s = (v.round() as u64).to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(p50: f64) -> Figures {
        Figures {
            p50_us: p50,
            p99_us: p50 * 2.0,
            transactions_per_s: 1e6 / p50,
            ..Figures::default()
        }
    }

    #[test]
    fn spread_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 3.0]).median, 2.0);
        assert!(Spread::of(&[]).median.is_nan());
    }

    #[test]
    fn a_report_from_before_workloads_still_reads_and_renders() {
        // docs/demo-report.json: written by the demo before workloads, NaN
        // handling, the host header and bits/loss figures existed.
        let old = include_str!("../../../../docs/demo-report.json");
        let r = DemoReport::from_json(old).expect("the old report parses");
        let names: Vec<Workload> = r.workloads.iter().map(|w| w.workload).collect();
        assert_eq!(names, [Workload::Rr, Workload::Rate]);
        assert!(r
            .measurements
            .iter()
            .filter(|m| m.key.starts_with("rate-"))
            .all(|m| m.workload == Workload::Rate));
        assert!(r.measurements[0].results[0].median.bits_per_s.is_nan());
        assert!(table::render(&r).contains("== Echo at constant rates"));
        assert!(html::render(&r).contains("id=\"workload-rate\""));
    }

    #[test]
    fn missing_figures_survive_a_json_round_trip_as_nan() {
        let mut f = fig(10.0);
        f.bits_per_s = 1e9;
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains("\"loss_ratio\":null"), "{text}");
        let back: Figures = serde_json::from_str(&text).unwrap();
        assert!(back.loss_ratio.is_nan() && back.p90_us.is_nan());
        assert_eq!((back.p50_us, back.bits_per_s), (10.0, 1e9));
    }

    #[test]
    fn ratios_pair_rounds() {
        let host = [fig(10.0), fig(20.0)];
        let dp = [fig(15.0), fig(20.0)];
        let r = ratios(&dp, &host);
        assert_eq!(r.p50.min, 1.0);
        assert_eq!(r.p50.max, 1.5);
        assert_eq!(r.p50.median, 1.25);
        assert!(r.transactions_per_s.median < 1.0);
    }
}
