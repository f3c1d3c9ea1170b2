//! The human-readable report (what the CLI prints without `--json`).

use std::fmt::Write;

use crate::report::{Direction, LatencyKind, LatencyOrigin, LatencySummary, Mode, Report};

/// Formats microseconds with a unit that keeps 3–4 significant digits.
pub(crate) fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.3}s", us / 1_000_000.0)
    }
}

/// Formats bits per second.
pub(crate) fn fmt_bits(bits: f64) -> String {
    if bits >= 1e9 {
        format!("{:.2} Gbit", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.2} Mbit", bits / 1e6)
    } else {
        format!("{:.1} kbit", bits / 1e3)
    }
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    render_header(&mut out, r);
    if let Some(l) = &r.latency {
        render_latency(&mut out, l);
    }
    if let Some(l) = &r.latency_from_send {
        let _ = writeln!(
            out,
            "  the same responses from the actual send (what a closed loop would report): p50 {}  p99 {}  p99.9 {}  max {}",
            fmt_us(l.p50_us),
            fmt_us(l.p99_us),
            fmt_us(l.p99_9_us),
            fmt_us(l.max_us)
        );
    }
    render_rates(&mut out, r);
    let c = &r.counts;
    let _ = writeln!(
        out,
        "counts: requests {}, responses {}, errors {}, timeouts {}, reconnects {}",
        c.requests_sent, c.responses, c.errors, c.timeouts, c.reconnects
    );
    render_timeline(&mut out, r);
    out
}

/// The first line: mode, target, sizes, connections, threads, duration.
fn render_header(out: &mut String, r: &Report) {
    let s = &r.settings;
    let mode = match r.mode {
        Mode::Rr => "rr (closed loop)",
        Mode::Rate => "rate (open loop)",
        Mode::Udp => "udp",
        Mode::Stream => "stream",
    };
    let sizes = match (s.protocol.as_str(), s.request_size) {
        ("http", _) => "HTTP GET".to_string(),
        ("stream", _) => format!("{} B writes", s.request_size),
        (_, _) => format!("{} B request, {} B response", s.request_size, s.response_size),
    };
    let _ = writeln!(
        out,
        "nearhost bench {mode} -> {}: {sizes}, {} connection(s), {} thread(s), {} s (+{} s warm-up)",
        r.target, s.connections, s.threads, s.duration_s, s.warmup_s
    );
}

/// What was carried: the open loop's schedule (or the transaction rate),
/// stream throughput, UDP loss.
fn render_rates(out: &mut String, r: &Report) {
    if let Some(rate) = &r.rate {
        let _ = writeln!(
            out,
            "rate: target {:.1}/s, achieved {:.1}/s, sent {:.1}/s; scheduled {}, unsent {}; \
             client send lag p50 {} p99 {} max {}",
            rate.target_per_s,
            rate.achieved_per_s,
            rate.sent_per_s,
            rate.requests_scheduled,
            rate.unsent,
            fmt_us(rate.send_lag_p50_us),
            fmt_us(rate.send_lag_p99_us),
            fmt_us(rate.send_lag_max_us)
        );
    } else if r.mode != Mode::Stream {
        let _ = writeln!(out, "transactions: {:.1}/s", r.transactions_per_s);
    }
    if let Some(t) = &r.throughput {
        let dir = match t.direction {
            Direction::ClientToServer => "client -> server (one way)",
            Direction::ServerToClient => "server -> client (one way)",
        };
        let _ = write!(out, "throughput {dir}: at the client {}/s", fmt_bits(t.client_bits_per_s));
        if let Some(rx) = t.receiver_bits_per_s {
            let _ = write!(out, ", receiver {}/s", fmt_bits(rx));
        }
        if let Some(retr) = t.retransmits {
            let _ = write!(out, "; {retr} retransmitted segments");
        }
        out.push('\n');
    }
    if let Some(u) = &r.udp {
        let _ = writeln!(
            out,
            "datagrams: sent {}, echoed {}, lost {} ({:.4}%, round trip), reordered {}, duplicates {}",
            u.sent,
            u.received,
            u.lost,
            u.loss_ratio * 100.0,
            u.reordered,
            u.duplicates
        );
    }
}

fn render_latency(out: &mut String, l: &LatencySummary) {
    let kind = match l.kind {
        LatencyKind::RoundTrip => "round trip",
        LatencyKind::OneWay => "one way",
    };
    let origin = match l.origin {
        LatencyOrigin::SendTime => "from the actual send (closed loop: stalls are under-reported)",
        LatencyOrigin::IntendedTime => {
            "from the intended send time (coordinated-omission corrected)"
        }
    };
    let _ = writeln!(out, "latency ({kind}, {origin}), {} samples:", l.samples);
    let _ = writeln!(
        out,
        "  min {}  mean {}  stddev {}",
        fmt_us(l.min_us),
        fmt_us(l.mean_us),
        fmt_us(l.stddev_us)
    );
    let _ = writeln!(
        out,
        "  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  p99.999 {}  max {}",
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p99_9_us),
        fmt_us(l.p99_99_us),
        fmt_us(l.p99_999_us),
        fmt_us(l.max_us)
    );
    if l.saturated > 0 {
        let _ = writeln!(out, "  {} samples above 60 s were recorded as 60 s", l.saturated);
    }
}

fn render_timeline(out: &mut String, r: &Report) {
    if r.timeline.is_empty() {
        return;
    }
    out.push_str("timeline (samples attributed to the second they completed in):\n");
    if r.mode == Mode::Stream {
        out.push_str("   second      throughput  errors\n");
        for i in &r.timeline {
            let _ = writeln!(
                out,
                "  {:>7.1}  {:>12}/s  {:>6}",
                i.end_s,
                fmt_bits(i.bits_per_s),
                i.errors
            );
        }
        return;
    }
    out.push_str("   second       per_s        p50        p99        max  errors\n");
    let opt = |v: Option<f64>| v.map(fmt_us).unwrap_or_else(|| "-".into());
    for i in &r.timeline {
        let _ = writeln!(
            out,
            "  {:>7.1}  {:>10.1}  {:>9}  {:>9}  {:>9}  {:>6}",
            i.end_s,
            i.per_s,
            opt(i.p50_us),
            opt(i.p99_us),
            opt(i.max_us),
            i.errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale() {
        assert_eq!(fmt_us(12.345), "12.3µs");
        assert_eq!(fmt_us(12_345.0), "12.35ms");
        assert_eq!(fmt_us(1_234_567.0), "1.235s");
        assert_eq!(fmt_bits(9.5e9), "9.50 Gbit");
        assert_eq!(fmt_bits(2.0e6), "2.00 Mbit");
    }
}
