//! Hand-written SVG charts (no scripts, no fetches): latency by percentile on a
//! log-scaled percentile axis, and bars of the ratio to the host.

use std::fmt::Write;

use super::{Figures, Measurement, Spread};
use crate::plan::Dp;

pub fn color(dp: Dp) -> &'static str {
    match dp {
        Dp::Host => "#222222",
        Dp::Bridge => "#d62728",
        Dp::Routed => "#2ca02c",
        Dp::RoutedBpf => "#17becf",
        Dp::Netkit => "#8c564b",
        Dp::Vxlan => "#ff7f0e",
        Dp::Macvlan => "#1f77b4",
        Dp::Ipvlan => "#9467bd",
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A chart's `<svg>` element (class `chart KIND`), its title and white
/// background; the caller closes it.
fn svg_open(h: f64, kind: &str, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" class="chart {kind}" role="img"><title>{}</title><rect x="0" y="0" width="{W}" height="{h}" fill="#fff"/>"##,
        escape(title)
    )
}

/// Horizontal grid lines of a linear axis from 0 to `ymax`, labelled.
fn grid(s: &mut String, ymax: f64, step: f64, py: &dyn Fn(f64) -> f64, label: fn(f64) -> String) {
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let y = py(v);
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            label(v)
        );
        v += step;
    }
}

/// x position of percentile `p` on the log axis of 1 / (1 - p).
fn log_pct(p: f64) -> f64 {
    (1.0 / (1.0 - p / 100.0)).log10()
}

/// A "nice" upper bound and step for an axis from 0 to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

const W: f64 = 640.0;
const H: f64 = 360.0;
const L: f64 = 70.0;
const R: f64 = 130.0;
const T: f64 = 30.0;
const B: f64 = 50.0;

/// Decades covering `[min, max]` (µs), for a log latency axis.
fn decades(min: f64, max: f64) -> (f64, f64) {
    let lo = if min.is_finite() && min > 0.0 { 10f64.powf(min.log10().floor()) } else { 1.0 };
    let hi = if max.is_finite() && max > 0.0 { 10f64.powf(max.log10().ceil()) } else { 10.0 * lo };
    (lo, hi.max(lo * 10.0))
}

/// Latency (µs, log scale) against percentile (log of 1/(1-p)), one line per
/// datapath: medians differ by microseconds and tails by milliseconds, so both
/// axes are logarithmic.
pub fn percentile_chart(m: &Measurement) -> String {
    let values: Vec<f64> = m
        .results
        .iter()
        .flat_map(|r| r.median.curve())
        .map(|(_, v)| v)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let (ylo, yhi) = decades(
        values.iter().copied().fold(f64::INFINITY, f64::min),
        values.iter().copied().fold(0.0, f64::max),
    );
    let (x0, x1) = (log_pct(50.0), log_pct(99.999));
    let px = |p: f64| L + (log_pct(p) - x0) / (x1 - x0) * (W - L - R);
    let py = |v: f64| {
        T + (1.0 - (v.max(ylo).log10() - ylo.log10()) / (yhi.log10() - ylo.log10())) * (H - T - B)
    };
    let mut s = svg_open(H, "percentile", &m.label);
    let mut decade = ylo;
    while decade <= yhi * 1.0001 {
        for (k, minor) in [1.0, 2.0, 5.0].iter().enumerate() {
            let v = decade * minor;
            if v > yhi * 1.0001 {
                break;
            }
            let y = py(v);
            let stroke = if k == 0 { "#d0d0d0" } else { "#f0f0f0" };
            let _ = write!(
                s,
                r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"##,
                W - R
            );
            if k == 0 {
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                    L - 6.0,
                    y + 4.0,
                    fmt_us(v)
                );
            }
        }
        decade *= 10.0;
    }
    for (p, label) in [
        (50.0, "50%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
        (99.999, "99.999%"),
    ] {
        let x = px(p);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{label}</text>"##,
            H - B,
            H - B + 16.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">percentile (log scale)</text>"#,
        (L + W - R) / 2.0,
        H - 10.0
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">round trip (log scale)</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    for (i, r) in m.results.iter().enumerate() {
        let pts: Vec<String> = r
            .median
            .curve()
            .iter()
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .map(|(p, v)| format!("{:.1},{:.1}", px(*p), py(*v)))
            .collect();
        let c = color(r.datapath);
        let _ = write!(
            s,
            r#"<polyline class="series" data-datapath="{}" fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            r.datapath.name(),
            pts.join(" ")
        );
        let ly = T + 14.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            W - R + 12.0,
            W - R + 32.0,
            W - R + 38.0,
            ly + 4.0,
            r.datapath.name()
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.0} s", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.0} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// Bars: each datapath's p50 and p99 round trip as a multiple of the host's,
/// with whiskers from the smallest to the largest round.
pub fn ratio_chart(m: &Measurement) -> String {
    let rows: Vec<(Dp, Spread, Spread)> = m
        .results
        .iter()
        .filter_map(|r| r.ratio_to_host.map(|rt| (r.datapath, rt.p50, rt.p99)))
        .collect();
    let max = rows
        .iter()
        .flat_map(|(_, a, b)| [a.max, b.max])
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let (ymax, ystep) = nice_axis(max);
    let h = 260.0;
    let py = |v: f64| T + (1.0 - v / ymax) * (h - T - B);
    let mut s = svg_open(h, "ratio", &format!("ratio to host: {}", m.label));
    grid(&mut s, ymax, ystep, &py, |v| format!("{v:.1}×"));
    let one = py(1.0);
    let _ = write!(
        s,
        r##"<line x1="{L}" y1="{one:.1}" x2="{:.1}" y2="{one:.1}" stroke="#222" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="11">host = 1×</text>"##,
        W - R,
        W - R + 6.0,
        one + 4.0
    );
    let slot = (W - L - R) / rows.len().max(1) as f64;
    for (i, (dp, p50, p99)) in rows.iter().enumerate() {
        let x = L + slot * i as f64 + slot * 0.15;
        let bw = slot * 0.3;
        for (j, (sp, op)) in [(p50, "1"), (p99, "0.55")].iter().enumerate() {
            if !sp.median.is_finite() {
                continue;
            }
            bar(&mut s, *dp, x + j as f64 * bw, bw - 2.0, sp, op, &py);
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            x + bw,
            h - B + 16.0,
            dp.name()
        );
    }
    let lx = W - R + 12.0;
    let ly = h - B - 40.0;
    let _ = write!(
        s,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="#777"/><text x="{:.1}" y="{:.1}" font-size="12">p50</text><rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="#777" fill-opacity="0.55"/><text x="{:.1}" y="{:.1}" font-size="12">p99</text><text x="{lx:.1}" y="{:.1}" font-size="10" fill="#555">whiskers: rounds</text>"##,
        lx + 18.0,
        ly + 10.0,
        ly + 18.0,
        lx + 18.0,
        ly + 28.0,
        ly + 46.0
    );
    s.push_str("</svg>");
    s
}

/// One bar from 0 to the median, with a whisker from the smallest to the
/// largest round.
fn bar(
    s: &mut String, dp: Dp, x: f64, width: f64, sp: &Spread, opacity: &str, py: &dyn Fn(f64) -> f64,
) {
    let (top, base) = (py(sp.median), py(0.0));
    let _ = write!(
        s,
        r#"<rect class="bar" data-datapath="{}" x="{x:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{}" fill-opacity="{opacity}"/>"#,
        dp.name(),
        (base - top).max(0.0),
        color(dp)
    );
    let cx = x + width / 2.0;
    let _ = write!(
        s,
        r##"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#111"/>"##,
        py(sp.min),
        py(sp.max)
    );
}

/// Grouped bars: one group per measurement (a window, a stream count, a
/// file), one bar per datapath, the measurement's headline figure (median
/// across rounds, whiskers from the smallest to the largest round). For
/// throughput, packet rates, maximum rates and loss.
pub fn bar_chart(title: &str, unit: &str, ms: &[&Measurement], scale: f64) -> String {
    let value = |m: &Measurement, f: &Figures| m.headline(f) * scale;
    let groups: Vec<(String, Vec<(Dp, Spread)>)> = ms
        .iter()
        .map(|m| {
            let bars = m
                .results
                .iter()
                .map(|r| {
                    let rounds: Vec<f64> = r.rounds.iter().map(|f| value(m, f)).collect();
                    (r.datapath, Spread::of(&rounds))
                })
                .collect();
            (category(&m.key), bars)
        })
        .collect();
    let max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, s)| s.max))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let (ymax, ystep) = nice_axis(max);
    let h = 300.0;
    let py = |v: f64| T + (1.0 - v / ymax) * (h - T - B);
    let mut s = svg_open(h, "bars", title);
    grid(&mut s, ymax, ystep, &py, axis_label);
    let _ = write!(
        s,
        r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        (T + h - B) / 2.0,
        (T + h - B) / 2.0,
        escape(unit)
    );
    let slot = (W - L - R) / groups.len().max(1) as f64;
    let mut legend: Vec<Dp> = Vec::new();
    for (i, (name, bars)) in groups.iter().enumerate() {
        let bw = slot * 0.8 / bars.len().max(1) as f64;
        for (j, (dp, sp)) in bars.iter().enumerate() {
            if !legend.contains(dp) {
                legend.push(*dp);
            }
            if !sp.median.is_finite() {
                continue;
            }
            let bx = L + slot * i as f64 + slot * 0.1 + bw * j as f64;
            bar(&mut s, *dp, bx, (bw - 1.0).max(1.0), sp, "1", &py);
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            L + slot * (i as f64 + 0.5),
            h - B + 16.0,
            escape(name)
        );
    }
    for (i, dp) in legend.iter().enumerate() {
        let ly = T + 14.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            W - R + 12.0,
            ly - 6.0,
            color(*dp),
            W - R + 30.0,
            ly + 4.0,
            dp.name()
        );
    }
    s.push_str("</svg>");
    s
}

/// A group's name under the bars: the key without its workload prefix.
fn category(key: &str) -> String {
    key.split_once('-').map(|(_, rest)| rest).unwrap_or(key).to_string()
}

/// Axis figures: 1,500 as 1.5k, 2,000,000 as 2M.
fn axis_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes() {
        assert_eq!(nice_axis(87.0), (100.0, 20.0));
        assert_eq!(nice_axis(3.2), (4.0, 1.0));
        assert_eq!(decades(23.0, 4100.0), (10.0, 10000.0));
        assert_eq!(decades(50.0, 60.0), (10.0, 100.0));
        assert!(log_pct(99.999) > log_pct(99.0));
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert_eq!(category("stream-64K"), "64K");
        assert_eq!(category("udp-loss-1400B-20000ps"), "loss-1400B-20000ps");
        assert_eq!(axis_label(1500.0), "1.5k");
        assert_eq!(axis_label(2e6), "2M");
        assert_eq!(axis_label(0.25), "0.25");
    }
}
