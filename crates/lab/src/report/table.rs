//! The terminal table.

use std::fmt::Write;

use super::{DemoReport, Spread};

fn num(v: f64) -> String {
    super::figure(v).unwrap_or_else(|| "-".into())
}

fn ratio(s: &Spread) -> String {
    if !s.median.is_finite() {
        return "-".into();
    }
    if (s.max - s.min).abs() < 0.005 {
        format!("{:.2}", s.median)
    } else {
        format!("{:.2} ({:.2}-{:.2})", s.median, s.min, s.max)
    }
}

pub fn render(r: &DemoReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "nearhost demo on {} (kernel {}): {} round{}, {} s per run, host maximum {} req/s",
        r.hostname,
        r.kernel,
        r.settings.rounds,
        if r.settings.rounds == 1 { "" } else { "s" },
        r.settings.duration_s,
        num(r.host_max_per_s)
    );
    let _ = writeln!(
        out,
        "round trip in µs; \"vs host\" = datapath / host, median across rounds (min-max)"
    );
    for m in &r.measurements {
        let _ = writeln!(out, "\n{}", m.label);
        let _ = writeln!(
            out,
            "  {:<9} {:>9} {:>9} {:>9} {:>10} {:>10}  {:<18} {:<18}",
            "datapath", "p50", "p99", "p99.9", "p99.99", "tx/s", "p50 vs host", "p99 vs host"
        );
        for d in &m.results {
            let f = &d.median;
            let (r50, r99) = match &d.ratio_to_host {
                Some(rt) => (ratio(&rt.p50), ratio(&rt.p99)),
                None => ("1.00".into(), "1.00".into()),
            };
            let mut warn = String::new();
            if let Some(target) = m.target_per_s {
                if f.transactions_per_s < 0.97 * target {
                    warn.push_str(&format!(
                        "  overloaded: {:.0}% of the target rate",
                        100.0 * f.transactions_per_s / target
                    ));
                }
            }
            if f.errors + f.timeouts > 0 {
                warn.push_str(&format!("  ({} errors, {} timeouts)", f.errors, f.timeouts));
            }
            let _ = writeln!(
                out,
                "  {:<9} {:>9} {:>9} {:>9} {:>10} {:>10}  {:<18} {:<18}{warn}",
                d.datapath.name(),
                num(f.p50_us),
                num(f.p99_us),
                num(f.p99_9_us),
                num(f.p99_99_us),
                num(f.transactions_per_s),
                r50,
                r99
            );
        }
    }
    let missing: Vec<_> = r.datapaths.iter().filter(|d| !d.available).collect();
    if !missing.is_empty() {
        let _ = writeln!(out);
        for d in missing {
            let _ = writeln!(
                out,
                "  {:<9} {}",
                d.datapath.name(),
                d.reason.as_deref().unwrap_or("not available")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(ratio(&Spread { median: 1.234, min: 1.2, max: 1.3 }), "1.23 (1.20-1.30)");
        assert_eq!(ratio(&Spread { median: 1.0, min: 1.0, max: 1.0 }), "1.00");
    }
}
