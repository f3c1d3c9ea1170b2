//! Agreement of `nearhost bench` with the reference tools on one path: two
//! network namespaces joined by a veth pair (198.18.0.1 ↔ 198.18.0.2),
//! servers pinned to CPU 1, clients to CPU 0, every pair of runs interleaved
//! (ours first in even rounds, the reference first in odd ones); each check
//! is the median over rounds of the ratio within each round's pair, the
//! figure least disturbed by other load on the machine:
//!
//! - `rr` round-trip p50 vs `sockperf ping-pong --tcp` p50 × 2 (sockperf
//!   reports half the round trip), 64-byte messages: ratio within ±10%;
//! - `stream` vs `iperf3` (sender bits/s): ratio within ±10%;
//! - `udp` ping-pong p50 vs `sockperf ping-pong` (UDP) p50 × 2: ±10%;
//! - `udp --rate` loss vs `sockperf under-load --reply-every 1` and
//!   `iperf3 -u` loss at the same packet rate and size: within 1 percentage
//!   point. Latency under load is printed next to sockperf's as INFO, not
//!   checked (see [`info`]); UDP latency agreement is checked by ping-pong.
//!
//! Run: `cargo bench -p nearhost --bench bench_agreement` (root; set
//! NHB_ROUNDS and NHB_SECONDS to change the 9 rounds × 3 s: short, many
//! pairs follow the machine's load more closely than few long ones). Prints one
//! CHECK line per comparison with PASS or OUT-OF-RANGE; exits non-zero only
//! if it could not run (missing tool, set-up failure).

use nearhost_testkit::bench as bench_support;
use nearhost_testkit::tools;

use std::collections::BTreeMap;
use std::time::Duration;

use bench_support::{run_program, run_report, spawn_program, start_server, VethPair};
use nearhost_bench::Report;
use tools::{
    env_or, iperf3_retransmits, iperf3_tcp_bits, iperf3_udp_loss_percent, loadavg, median,
    require_tool, Check,
};
use tools::{sockperf_dropped, sockperf_percentile, sockperf_valid_messages};

const SOCKPERF_TCP: &str = "11111";
const SOCKPERF_UDP: &str = "11112";
const IPERF: &str = "5201";
/// Packet rate and size of the UDP load comparison.
const UDP_RATE: u64 = 20_000;
const UDP_SIZE: u64 = 64;

struct Bench {
    pair: VethPair,
    target: String,
    secs: u64,
    /// Per measured figure, one sample per round.
    samples: BTreeMap<&'static str, Vec<f64>>,
}

impl Bench {
    fn limit(&self) -> Duration {
        Duration::from_secs(self.secs * 3 + 30)
    }

    fn record(&mut self, key: &'static str, value: f64) {
        println!("    {key:<28} {value:>14.3}");
        self.samples.entry(key).or_default().push(value);
    }

    fn median(&self, key: &str) -> f64 {
        median(&self.samples[key])
    }

    /// `nearhost bench MODE` in namespace a, pinned to CPU 0.
    fn ours(&self, mode: &str, extra: &[&str]) -> Report {
        let secs = self.secs.to_string();
        let mut args =
            vec!["bench", mode, "--target", &self.target, "--duration", &secs, "--cpus", "0"];
        args.extend_from_slice(extra);
        run_report(Some(&self.pair.a.name), &args, self.limit())
    }

    /// A reference client in namespace a, pinned to CPU 0; returns its output.
    fn reference(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["-c", "0", program];
        all.extend_from_slice(args);
        let out = run_program(Some(&self.pair.a.name), "taskset", &all, self.limit());
        assert!(out.status.success(), "{program} {args:?} failed: {}\n{}", out.stdout, out.stderr);
        out.stdout + &out.stderr
    }

    fn rr(&mut self) {
        let r =
            self.ours("rr", &["--request-size", "64", "--response-size", "64", "--warmup", "0.5"]);
        self.record("rr p50 us", r.latency.expect("rr latency").p50_us);
    }

    fn sockperf_tcp(&mut self) {
        let secs = self.secs.to_string();
        let out = self.reference(
            "sockperf",
            &[
                "ping-pong",
                "--tcp",
                "-i",
                VethPair::ADDR_B,
                "-p",
                SOCKPERF_TCP,
                "-m",
                "64",
                "-t",
                &secs,
            ],
        );
        let half = sockperf_percentile(&out, "50.000").expect("sockperf p50");
        self.record("sockperf tcp p50 x2 us", 2.0 * half);
    }

    fn stream(&mut self) {
        let r = self.ours("stream", &[]);
        let t = r.throughput.expect("throughput");
        self.record("stream sender bit/s", t.client_bits_per_s);
        self.record("stream receiver bit/s", t.receiver_bits_per_s.unwrap_or(f64::NAN));
        self.record("stream retransmits", t.retransmits.map_or(f64::NAN, |r| r as f64));
    }

    fn iperf3_tcp(&mut self) {
        let secs = self.secs.to_string();
        let out =
            self.reference("iperf3", &["-c", VethPair::ADDR_B, "-p", IPERF, "-t", &secs, "-J"]);
        let (sent, received) = iperf3_tcp_bits(&out).expect("iperf3 JSON");
        self.record("iperf3 sender bit/s", sent);
        self.record("iperf3 receiver bit/s", received);
        self.record("iperf3 retransmits", iperf3_retransmits(&out).map_or(f64::NAN, |r| r as f64));
    }

    fn udp_ping_pong(&mut self) {
        let r = self.ours("udp", &["--size", "64"]);
        self.record("udp p50 us", r.latency.expect("udp latency").p50_us);
    }

    fn sockperf_udp(&mut self) {
        let secs = self.secs.to_string();
        let out = self.reference(
            "sockperf",
            &["ping-pong", "-i", VethPair::ADDR_B, "-p", SOCKPERF_UDP, "-m", "64", "-t", &secs],
        );
        self.record(
            "sockperf udp p50 x2 us",
            2.0 * sockperf_percentile(&out, "50.000").expect("sockperf p50"),
        );
    }

    fn udp_load(&mut self) {
        let (rate, size) = (UDP_RATE.to_string(), UDP_SIZE.to_string());
        let r = self.ours("udp", &["--rate", &rate, "--size", &size]);
        self.record("udp load loss %", r.udp.expect("udp section").loss_ratio * 100.0);
        // sockperf measures from the actual send: compare like with like,
        // and show the coordinated-omission-correct figure next to it.
        self.record("udp load p50 us", r.latency_from_send.expect("udp latency from send").p50_us);
        self.record("udp load p50 (intended) us", r.latency.expect("udp latency").p50_us);
    }

    fn sockperf_load(&mut self) {
        let (secs, rate, size) =
            (self.secs.to_string(), UDP_RATE.to_string(), UDP_SIZE.to_string());
        let out = self.reference(
            "sockperf",
            &[
                "under-load",
                "-i",
                VethPair::ADDR_B,
                "-p",
                SOCKPERF_UDP,
                "-m",
                &size,
                "--mps",
                &rate,
                "--reply-every",
                "1",
                "-t",
                &secs,
            ],
        );
        let (sent, _) = sockperf_valid_messages(&out).expect("sockperf message counts");
        let dropped = sockperf_dropped(&out).expect("sockperf dropped count");
        self.record("sockperf load loss %", dropped as f64 * 100.0 / sent.max(1) as f64);
        self.record(
            "sockperf load p50 x2 us",
            2.0 * sockperf_percentile(&out, "50.000").expect("sockperf p50"),
        );
    }

    fn iperf3_udp(&mut self) {
        let secs = self.secs.to_string();
        let bits = (UDP_RATE * UDP_SIZE * 8).to_string();
        let size = UDP_SIZE.to_string();
        let out = self.reference(
            "iperf3",
            &[
                "-c",
                VethPair::ADDR_B,
                "-p",
                IPERF,
                "-u",
                "-b",
                &bits,
                "-l",
                &size,
                "-t",
                &secs,
                "-J",
            ],
        );
        self.record("iperf3 udp loss %", iperf3_udp_loss_percent(&out).expect("iperf3 UDP JSON"));
    }
}

fn main() {
    require_tool("sockperf", "--version", "sockperf");
    require_tool("iperf3", "--version", "iperf3");
    let rounds: usize = env_or("NHB_ROUNDS", 9);
    let secs: u64 = env_or("NHB_SECONDS", 3);
    let pair = VethPair::new();
    let b = Some(pair.b.name.as_str());
    let listen = format!("{}:7000", VethPair::ADDR_B);
    let (_nearhost, addr) = start_server(b, &listen, &["--threads", "1", "--cpus", "1"]);
    let _servers = [
        spawn_program(
            b,
            "taskset",
            &["-c", "1", "sockperf", "server", "--tcp", "-i", VethPair::ADDR_B, "-p", SOCKPERF_TCP],
        ),
        spawn_program(
            b,
            "taskset",
            &["-c", "1", "sockperf", "server", "-i", VethPair::ADDR_B, "-p", SOCKPERF_UDP],
        ),
        spawn_program(
            b,
            "taskset",
            &["-c", "1", "iperf3", "-s", "-B", VethPair::ADDR_B, "-p", IPERF],
        ),
    ];
    std::thread::sleep(Duration::from_secs(1)); // the reference servers print no "ready" line
    let mut bench = Bench { pair, target: addr.to_string(), secs, samples: BTreeMap::new() };
    println!("bench_agreement: {rounds} rounds x {secs} s, veth between two namespaces, servers on CPU 1, clients on CPU 0");
    for round in 0..rounds {
        println!("round {} (loadavg {})", round + 1, loadavg());
        type Step = fn(&mut Bench);
        let pairs: [(Step, Step); 4] = [
            (Bench::rr, Bench::sockperf_tcp),
            (Bench::stream, Bench::iperf3_tcp),
            (Bench::udp_ping_pong, Bench::sockperf_udp),
            (Bench::udp_load, Bench::sockperf_load),
        ];
        for (ours, reference) in pairs {
            if round % 2 == 0 {
                ours(&mut bench);
                reference(&mut bench);
            } else {
                reference(&mut bench);
                ours(&mut bench);
            }
        }
        bench.iperf3_udp();
    }
    println!("summary (medians of {rounds} rounds, loadavg now {}):", loadavg());
    for check in checks(&bench) {
        println!("{}", check.line());
    }
    println!("{}", info(&bench));
}

fn checks(b: &Bench) -> Vec<Check> {
    let us = |v: f64| format!("{v:.2} µs");
    let gbit = |v: f64| format!("{:.3} Gbit/s", v / 1e9);
    let pct = |v: f64| format!("{v:.3} %");
    // Each round's pair ran back to back, so its ratio is the least
    // disturbed by whatever else the machine did; the check uses the median
    // of the per-round ratios (the values shown are the per-figure medians).
    let ratio =
        |name: &str, ours: &str, reference: &str, fmt: &dyn Fn(f64) -> String, label: &str| {
            let ratios: Vec<f64> =
                b.samples[ours].iter().zip(&b.samples[reference]).map(|(o, r)| o / r).collect();
            let shown = format!("{label} {}", fmt(b.median(reference)));
            Check::ratio(name, fmt(b.median(ours)), shown, median(&ratios), 0.9, 1.1)
        };
    let loss = |name: &str, reference: &str, label: &str| {
        let diffs: Vec<f64> = b.samples["udp load loss %"]
            .iter()
            .zip(&b.samples[reference])
            .map(|(o, r)| o - r)
            .collect();
        let (o, r) = (b.median("udp load loss %"), b.median(reference));
        let value = median(&diffs);
        Check {
            name: name.into(),
            ours: pct(o),
            reference: format!("{label} {}", pct(r)),
            metric: "diff pp",
            value,
            low: -1.0,
            high: 1.0,
        }
    };
    vec![
        ratio("rr-p50-64B", "rr p50 us", "sockperf tcp p50 x2 us", &us, "sockperf 2x"),
        ratio("stream-sender", "stream sender bit/s", "iperf3 sender bit/s", &gbit, "iperf3"),
        ratio("stream-receiver", "stream receiver bit/s", "iperf3 receiver bit/s", &gbit, "iperf3"),
        ratio("udp-pingpong-p50", "udp p50 us", "sockperf udp p50 x2 us", &us, "sockperf 2x"),
        loss("udp-load-loss-sockperf", "sockperf load loss %", "sockperf"),
        loss("udp-load-loss-iperf3", "iperf3 udp loss %", "iperf3 -u"),
    ]
}

/// Under load, sockperf's own latency is dominated by how its busy-waiting
/// client is scheduled (on this shared VM its p50 is hundreds of µs even on
/// loopback, with a bimodal distribution), so the two p50s are shown side by
/// side without a verdict: a ratio against that would not test us.
fn info(b: &Bench) -> String {
    let retr = format!(
        "INFO  stream-retransmits      nearhost {:.0} | iperf3 {:.0} | not a check",
        b.median("stream retransmits"),
        b.median("iperf3 retransmits")
    );
    retr + "\n" + &format!(
        "INFO  udp-load-p50 (20k/s)    nearhost {:.2} µs from the send, {:.2} µs from the intended time | sockperf under-load 2x {:.2} µs | not a check",
        b.median("udp load p50 us"),
        b.median("udp load p50 (intended) us"),
        b.median("sockperf load p50 x2 us")
    )
}
