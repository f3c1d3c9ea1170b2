//! The demo's results: per measurement and datapath, every round's figures, the
//! median across rounds, and the ratio to the host baseline with its spread.
//! Rendered as a terminal table, JSON, and a self-contained HTML page.

pub mod html;
pub mod svg;
pub mod table;

use serde::{Deserialize, Serialize};

use crate::plan::Dp;

pub const SCHEMA: &str = "nearhost-demo/1";

/// The figures of one client run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Figures {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub p99_999_us: f64,
    pub max_us: f64,
    pub transactions_per_s: f64,
    pub errors: u64,
    pub timeouts: u64,
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
    pub median: f64,
    pub min: f64,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoReport {
    pub schema: String,
    pub kernel: String,
    pub hostname: String,
    pub started_unix: u64,
    pub wall_time_s: f64,
    pub settings: Settings,
    /// The host baseline's maximum closed-loop rate (the rate levels are fractions of it).
    pub host_max_per_s: f64,
    pub datapaths: Vec<DatapathInfo>,
    pub measurements: Vec<Measurement>,
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
