//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! fetches) a network engineer can forward as it is.

use std::fmt::Write;

use super::svg::{bar_chart, color, escape, percentile_chart, ratio_chart};
use super::{DemoReport, Measurement, Metric, Spread, WorkloadSection};

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1340px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.3rem;margin-top:2.6rem;border-bottom:2px solid #ccc;padding-bottom:.3rem}h3{font-size:1.1rem;margin-top:1.8rem}
.sub{color:#555;margin-top:0}table{border-collapse:collapse;font-size:.9rem;margin:.6rem 0}
td,th{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:right}th{background:#f6f6f6}
td:first-child,th:first-child{text-align:left;white-space:nowrap}.desc td,.desc th{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.4rem;vertical-align:middle}
.na{color:#999}.note{color:#555;font-size:.9rem}code{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}";

fn f(v: f64) -> String {
    super::figure(v).unwrap_or_else(|| "–".into())
}

fn ratio(s: &Spread) -> String {
    if !s.median.is_finite() {
        return "–".into();
    }
    format!("{:.2}× <span class=\"note\">({:.2}–{:.2})</span>", s.median, s.min, s.max)
}

fn measurement_section(out: &mut String, m: &Measurement) {
    let _ = write!(
        out,
        "<section class=\"measurement\" id=\"{}\"><h3>{}</h3>",
        escape(&m.key),
        escape(&m.label)
    );
    let _ = write!(out, "<div class=\"charts\">{}{}</div>", percentile_chart(m), ratio_chart(m));
    out.push_str("<table><tr><th>datapath</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>p99.99 µs</th><th>p99.999 µs</th><th>max µs</th><th>tx/s</th><th>p50 vs host</th><th>p99 vs host</th><th>p99.99 vs host</th></tr>");
    for r in &m.results {
        let x = &r.median;
        let overloaded = m.target_per_s.filter(|t| x.transactions_per_s < 0.97 * t).map(|t| {
            format!(
                " <span class=\"na\">(overloaded: {:.0}% of the target rate)</span>",
                100.0 * x.transactions_per_s / t
            )
        });
        let (a, b, c) = match &r.ratio_to_host {
            Some(rt) => (ratio(&rt.p50), ratio(&rt.p99), ratio(&rt.p99_99)),
            None => ("1×".into(), "1×".into(), "1×".into()),
        };
        let _ = write!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{a}</td><td>{b}</td><td>{c}</td></tr>",
            color(r.datapath),
            r.datapath.name(),
            overloaded.unwrap_or_default(),
            f(x.p50_us),
            f(x.p90_us),
            f(x.p99_us),
            f(x.p99_9_us),
            f(x.p99_99_us),
            f(x.p99_999_us),
            f(x.max_us),
            f(x.transactions_per_s)
        );
    }
    out.push_str("</table></section>");
}

/// A throughput, packet-rate, maximum-rate or loss measurement: a row per
/// datapath with the headline, its ratio to the host and the loss.
fn rate_section(out: &mut String, m: &Measurement) {
    let _ = write!(
        out,
        "<section class=\"measurement\" id=\"{}\"><h3>{}</h3>",
        escape(&m.key),
        escape(&m.label)
    );
    // Latency means something only where the load was paced below
    // saturation (the loss test); at saturation it is the client's queue.
    let latency = m.metric == Metric::Loss;
    let lost_col = m.results.iter().any(|r| r.median.loss_ratio.is_finite());
    out.push_str("<table><tr><th>datapath</th><th>figure</th><th>vs host</th>");
    if lost_col {
        out.push_str("<th>lost</th>");
    }
    if latency {
        out.push_str("<th>p50 µs</th><th>p99 µs</th>");
    }
    out.push_str("<th>errors + timeouts</th></tr>");
    for r in &m.results {
        let x = &r.median;
        let vs = match (&r.ratio_to_host, m.metric) {
            (_, Metric::Loss) => "–".into(),
            (Some(rt), _) => m.headline_ratio(rt).map(|s| ratio(&s)).unwrap_or_else(|| "–".into()),
            (None, _) => "1×".into(),
        };
        let lost = if x.loss_ratio.is_finite() {
            format!("{:.3}%", 100.0 * x.loss_ratio)
        } else {
            "–".into()
        };
        let _ = write!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{vs}</td>",
            color(r.datapath),
            r.datapath.name(),
            escape(&m.headline_text(x)),
        );
        if lost_col {
            let _ = write!(out, "<td>{lost}</td>");
        }
        if latency {
            let _ = write!(out, "<td>{}</td><td>{}</td>", f(x.p50_us), f(x.p99_us));
        }
        let _ = write!(out, "<td>{}</td></tr>", x.errors + x.timeouts);
    }
    out.push_str("</table></section>");
}

/// One workload: the study, what this run found, then its measurements —
/// latency ones with percentile curves, the others gathered into one bar
/// chart per kind of figure.
fn workload_section(out: &mut String, r: &DemoReport, w: &WorkloadSection) {
    let _ = write!(
        out,
        "<section class=\"workload\" id=\"workload-{}\"><h2>{}</h2><p><b>The study.</b> {}</p><p><b>What we found here</b> (median across rounds):</p><ul class=\"found\">",
        w.workload.name(),
        escape(&w.title),
        escape(&w.study)
    );
    for line in &w.found {
        let _ = write!(out, "<li>{}</li>", escape(line));
    }
    out.push_str("</ul>");
    let ms: Vec<&Measurement> = r.of(w.workload).collect();
    for (metric, unit, scale) in [
        (Metric::MaxRate, "requests/s at saturation", 1.0),
        (Metric::Throughput, "Gbit/s", 1e-9),
        (Metric::PacketRate, "echoed datagrams/s", 1.0),
        (Metric::Loss, "% of datagrams lost", 100.0),
    ] {
        let group: Vec<&Measurement> = ms.iter().copied().filter(|m| m.metric == metric).collect();
        if !group.is_empty() {
            let title = format!("{}: {unit}", w.title);
            let _ = write!(
                out,
                "<div class=\"charts\">{}</div>",
                bar_chart(&title, unit, &group, scale)
            );
        }
    }
    for m in ms {
        match m.metric {
            Metric::Latency => measurement_section(out, m),
            _ => rate_section(out, m),
        }
    }
    out.push_str("</section>");
}

pub fn render(r: &DemoReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nearhost demo: container datapaths vs the host</title><style>{STYLE}</style></head><body>");
    let mut maxima = Vec::new();
    if let Some(m) = r.host_max_per_s {
        maxima.push(format!("echo {m:.0} req/s"));
    }
    for (file, m) in &r.host_http_max_per_s {
        maxima.push(format!("nginx {} {m:.0} req/s", escape(file)));
    }
    let _ = write!(
        out,
        "<h1>Container datapaths, measured against the host</h1><p class=\"sub\">nearhost demo on <b>{}</b>, kernel <b>{}</b>, {} round{} of {} s per run (A B C … interleaved){}</p>",
        escape(&r.hostname),
        escape(&r.kernel),
        r.settings.rounds,
        if r.settings.rounds == 1 { "" } else { "s" },
        r.settings.duration_s,
        if maxima.is_empty() { String::new() } else { format!(", host maximum: {}", maxima.join(", ")) }
    );
    out.push_str("<p>Two hosts (network namespaces) are joined by a top-of-rack bridge. On each, nearhost's CNI code attached one container per datapath; a <code>nearhost bench</code> client in the container on host 1 talks to a server in the container on host 2. Latency is the round trip; open-loop runs measure it from each request's intended send time, so stalls are not hidden (no coordinated omission). Ratios are per round, datapath ÷ host, summarised as median (min–max) across rounds; each round runs the datapaths in a rotated order. A datapath marked <i>overloaded</i> could not carry the open-loop rate (its requests queued: its latency is the queue's).</p>");
    if let Some(h) = &r.host {
        out.push_str("<h2>The host</h2><table class=\"desc\">");
        let _ = write!(
            out,
            "<tr><th>CPUs</th><td>{} in {} NUMA node{}</td></tr><tr><th>link kinds</th><td>{}</td></tr><tr><th>irqbalance, conntrack, rp_filter</th><td>{}, {}, {}</td></tr><tr><th>tuning</th><td>{}</td></tr>",
            h.cpus,
            h.numa_nodes,
            if h.numa_nodes == 1 { "" } else { "s" },
            escape(&h.links_line()),
            if h.irqbalance_running { "running" } else { "not running" },
            if h.conntrack_loaded { "loaded" } else { "not loaded" },
            escape(h.rp_filter.as_deref().unwrap_or("?")),
            escape(&h.tuning)
        );
        for w in &h.in_the_way {
            let _ = write!(out, "<tr><th>in the way</th><td>{}</td></tr>", escape(w));
        }
        if let Some(line) = super::lab_hosts_line(&r.lab_hosts) {
            let _ = write!(out, "<tr><th>lab hosts' sysctls</th><td>{}</td></tr>", escape(&line));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Datapaths</h2><table class=\"desc\"><tr><th>datapath</th><th>what it is</th><th>client → server</th></tr>");
    for d in &r.datapaths {
        let target = if d.available {
            escape(d.target.as_deref().unwrap_or(""))
        } else {
            format!(
                "<span class=\"na\">{}</span>",
                escape(d.reason.as_deref().unwrap_or("not available"))
            )
        };
        let _ = write!(out, "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{target}</td></tr>", color(d.datapath), d.datapath.name(), escape(&d.description));
    }
    out.push_str("</table>");
    for w in &r.workloads {
        workload_section(&mut out, r, w);
    }
    let _ = write!(
        out,
        "<p class=\"note\">Reproduce: <code>nearhost demo{}{}</code> (report schema {}, wall time {:.0} s). Client pinned to CPU {}, server to CPU {}.</p></body></html>",
        if r.settings.quick { " --quick" } else { "" },
        if r.settings.workloads == crate::workload::DEFAULT {
            String::new()
        } else {
            format!(
                " --workload {}",
                r.settings.workloads.iter().map(|w| w.name()).collect::<Vec<_>>().join(",")
            )
        },
        escape(&r.schema),
        r.wall_time_s,
        r.settings.client_cpu.map(|c| c.to_string()).unwrap_or_else(|| "–".into()),
        r.settings.server_cpu.map(|c| c.to_string()).unwrap_or_else(|| "–".into())
    );
    out
}
