//! The terminal table.

use std::fmt::Write;

use super::{DemoReport, Figures, Measurement, Metric, Spread};

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
    let mut maxima = Vec::new();
    if let Some(m) = r.host_max_per_s {
        maxima.push(format!("echo {} req/s", num(m)));
    }
    for (file, m) in &r.host_http_max_per_s {
        maxima.push(format!("nginx {file} {} req/s", num(*m)));
    }
    let _ = writeln!(
        out,
        "nearhost demo on {} (kernel {}): {} round{}, {} s per run{}",
        r.hostname,
        r.kernel,
        r.settings.rounds,
        if r.settings.rounds == 1 { "" } else { "s" },
        r.settings.duration_s,
        if maxima.is_empty() {
            String::new()
        } else {
            format!(", host maximum {}", maxima.join(", "))
        }
    );
    if let Some(h) = &r.host {
        let _ = writeln!(out, "host: {}", h.line());
        for w in &h.in_the_way {
            let _ = writeln!(out, "  in the way: {w}");
        }
    }
    if let Some(line) = super::lab_hosts_line(&r.lab_hosts) {
        let _ = writeln!(out, "lab hosts' sysctls: {line}");
    }
    let _ = writeln!(
        out,
        "round trip in µs; \"vs host\" = datapath / host, median across rounds (min-max)"
    );
    for section in &r.workloads {
        let _ = writeln!(out, "\n== {} ==", section.title);
        for m in r.of(section.workload) {
            let _ = writeln!(out, "\n{}", m.label);
            match m.metric {
                Metric::Latency => latency_table(&mut out, m),
                _ => rate_table(&mut out, m),
            }
        }
    }
    let missing: Vec<_> = r.datapaths.iter().filter(|d| !d.available).collect();
    if !missing.is_empty() {
        let _ = writeln!(out);
        for d in missing {
            let _ = writeln!(
                out,
                "  {:<10} {}",
                d.datapath.name(),
                d.reason.as_deref().unwrap_or("not available")
            );
        }
    }
    out
}

/// What went wrong in a run, for the end of its row.
fn warnings(m: &Measurement, f: &Figures) -> String {
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
    warn
}

fn latency_table(out: &mut String, m: &Measurement) {
    let _ = writeln!(
        out,
        "  {:<10} {:>9} {:>9} {:>9} {:>10} {:>10}  {:<18} {:<18}",
        "datapath", "p50", "p99", "p99.9", "p99.99", "tx/s", "p50 vs host", "p99 vs host"
    );
    for d in &m.results {
        let f = &d.median;
        let (r50, r99) = match &d.ratio_to_host {
            Some(rt) => (ratio(&rt.p50), ratio(&rt.p99)),
            None => ("1.00".into(), "1.00".into()),
        };
        let _ = writeln!(
            out,
            "  {:<10} {:>9} {:>9} {:>9} {:>10} {:>10}  {:<18} {:<18}{}",
            d.datapath.name(),
            num(f.p50_us),
            num(f.p99_us),
            num(f.p99_9_us),
            num(f.p99_99_us),
            num(f.transactions_per_s),
            r50,
            r99,
            warnings(m, f)
        );
    }
}

/// Throughput, packet rate, maximum rate and loss: the headline figure, its
/// ratio to the host, and the loss where datagrams were counted; p99 only for
/// the paced loss test (at saturation latency is the client's queue).
fn rate_table(out: &mut String, m: &Measurement) {
    let head = match m.metric {
        Metric::Throughput => "Gbit/s",
        Metric::MaxRate => "req/s",
        _ => "echoes/s",
    };
    let _ = writeln!(
        out,
        "  {:<10} {:>12} {:>10} {:>9}  {:<18}",
        "datapath",
        head,
        "lost",
        if m.metric == Metric::Loss { "p99" } else { "" },
        "vs host"
    );
    for d in &m.results {
        let f = &d.median;
        let value = match m.metric {
            Metric::Throughput => super::gbit(f.bits_per_s),
            _ => num(f.transactions_per_s),
        };
        let lost = if f.loss_ratio.is_finite() {
            format!("{:.3}%", 100.0 * f.loss_ratio)
        } else {
            "-".into()
        };
        let p99 = if m.metric == Metric::Loss { num(f.p99_us) } else { String::new() };
        let vs = match (&d.ratio_to_host, m.metric) {
            (_, Metric::Loss) => "-".into(),
            (Some(rt), _) => m.headline_ratio(rt).map(|s| ratio(&s)).unwrap_or_else(|| "-".into()),
            (None, _) => "1.00".into(),
        };
        let _ = writeln!(
            out,
            "  {:<10} {:>12} {:>10} {:>9}  {:<18}{}",
            d.datapath.name(),
            value,
            lost,
            p99,
            vs,
            warnings(m, f)
        );
    }
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
