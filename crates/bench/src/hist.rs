//! Latency histograms and the percentile math of the report.
//!
//! Samples are nanoseconds. The histogram tracks 1 ns … 60 s at 3 significant
//! digits, which covers the required 1 µs … 60 s range and keeps loopback
//! latencies (a few µs) at ~0.1% resolution instead of rounding them to whole
//! microseconds. Samples above 60 s are recorded as 60 s and counted as
//! saturated so the report can say so.

use hdrhistogram::Histogram;

use crate::report::{LatencyKind, LatencyOrigin, LatencySummary};

/// Largest trackable sample: 60 s in nanoseconds.
pub(crate) const HIGHEST_NS: u64 = 60_000_000_000;
/// Precision of the run-wide histogram.
const SIGFIG: u8 = 3;
/// Precision of the per-second histograms: they only feed the timeline, and
/// one is alive per thread per second, so they are kept small (~30 KiB).
const INTERVAL_SIGFIG: u8 = 2;

/// The percentiles every report lists, as (quantile, label) pairs.
pub(crate) const PERCENTILES: [(f64, &str); 6] = [
    (0.50, "p50"),
    (0.90, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
    (0.99999, "p99.999"),
];

/// A latency histogram with exact min/max and a saturation count.
#[derive(Clone)]
pub(crate) struct LatencyHistogram {
    hist: Histogram<u64>,
    saturated: u64,
    min_ns: u64,
    max_ns: u64,
}

impl LatencyHistogram {
    /// A run-wide histogram (3 significant digits).
    pub(crate) fn new() -> Self {
        Self::with_sigfig(SIGFIG)
    }

    /// A per-second histogram (2 significant digits).
    pub(crate) fn new_interval() -> Self {
        Self::with_sigfig(INTERVAL_SIGFIG)
    }

    fn with_sigfig(sigfig: u8) -> Self {
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, sigfig)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { hist, saturated: 0, min_ns: u64::MAX, max_ns: 0 }
    }

    /// Records one sample in nanoseconds.
    pub(crate) fn record(&mut self, ns: u64) {
        let clamped = ns.clamp(1, HIGHEST_NS);
        if ns > HIGHEST_NS {
            self.saturated += 1;
        }
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        // Cannot fail: the value is clamped into the histogram's bounds.
        self.hist.record(clamped).expect("clamped sample is within bounds");
    }

    /// Adds every sample of `other` (which may have another precision).
    pub(crate) fn merge(&mut self, other: &LatencyHistogram) {
        if other.is_empty() {
            return;
        }
        // Both histograms share the same bounds, so adding cannot overflow
        // the range; precision differences are handled by hdrhistogram.
        self.hist.add(&other.hist).expect("histograms share bounds");
        self.saturated += other.saturated;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at quantile `q` (0..=1), in µs.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        ns_to_us(self.hist.value_at_quantile(q))
    }

    /// Exact largest sample in µs.
    pub(crate) fn max_us(&self) -> f64 {
        ns_to_us(self.max_ns)
    }

    /// The report section, or `None` when there are no samples.
    pub(crate) fn summary(
        &self, kind: LatencyKind, origin: LatencyOrigin,
    ) -> Option<LatencySummary> {
        if self.is_empty() {
            return None;
        }
        // Bucketed values are the upper edge of their bucket; clamping to the
        // exact extremes keeps p99.999 from reading above the true max.
        let (min_us, max_us) = (ns_to_us(self.min_ns), self.max_us());
        let q = |i: usize| self.quantile_us(PERCENTILES[i].0).clamp(min_us, max_us);
        Some(LatencySummary {
            kind,
            origin,
            samples: self.len(),
            saturated: self.saturated,
            min_us,
            mean_us: self.hist.mean() / 1000.0,
            stddev_us: self.hist.stdev() / 1000.0,
            p50_us: q(0),
            p90_us: q(1),
            p99_us: q(2),
            p99_9_us: q(3),
            p99_99_us: q(4),
            p99_999_us: q(5),
            max_us,
        })
    }
}

/// Nanoseconds to fractional microseconds.
pub(crate) fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(samples: impl IntoIterator<Item = u64>) -> LatencySummary {
        let mut h = LatencyHistogram::new();
        for s in samples {
            h.record(s);
        }
        h.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime).unwrap()
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        // 1..=100_000 µs: p50 = 50 ms, p99 = 99 ms, within 0.1%.
        let s = summary_of((1..=100_000u64).map(|us| us * 1000));
        assert!((s.p50_us - 50_000.0).abs() / 50_000.0 < 0.001, "p50 {}", s.p50_us);
        assert!((s.p99_us - 99_000.0).abs() / 99_000.0 < 0.001, "p99 {}", s.p99_us);
        assert!((s.p99_9_us - 99_900.0).abs() / 99_900.0 < 0.001, "p99.9 {}", s.p99_9_us);
        assert_eq!(s.samples, 100_000);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 100_000.0);
        assert!((s.mean_us - 50_000.5).abs() < 50.0);
    }

    #[test]
    fn microsecond_latencies_keep_sub_microsecond_resolution() {
        let s = summary_of([12_345u64; 10]);
        assert!((s.p50_us - 12.345).abs() < 0.02, "p50 {}", s.p50_us);
        assert_eq!(s.max_us, 12.345);
    }

    #[test]
    fn rare_outliers_show_only_in_the_high_percentiles() {
        // 99,990 samples at 20 µs and 10 at 1 s: p99.99 must see the stall,
        // p99.9 must not.
        let samples =
            std::iter::repeat_n(20_000u64, 99_990).chain(std::iter::repeat_n(1_000_000_000, 10));
        let s = summary_of(samples);
        assert!(s.p99_9_us < 21.0, "p99.9 {}", s.p99_9_us);
        assert!(s.p99_999_us >= 999_000.0, "p99.999 {}", s.p99_999_us);
        assert_eq!(s.max_us, 1_000_000.0);
    }

    #[test]
    fn samples_above_sixty_seconds_saturate() {
        let s = summary_of([HIGHEST_NS * 2, 1000]);
        assert_eq!(s.saturated, 1);
        assert_eq!(s.samples, 2);
        assert!(s.p99_us <= 60_100_000.0);
        assert_eq!(s.max_us, ns_to_us(HIGHEST_NS * 2));
    }

    #[test]
    fn merge_combines_counts_and_extremes() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new_interval();
        a.record(5_000);
        b.record(7_000_000);
        b.record(3_000);
        a.merge(&b);
        let s = a.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime).unwrap();
        assert_eq!(s.samples, 3);
        assert_eq!(s.min_us, 3.0);
        assert_eq!(s.max_us, 7_000.0);
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        let h = LatencyHistogram::new();
        assert!(h.summary(LatencyKind::RoundTrip, LatencyOrigin::SendTime).is_none());
    }
}
