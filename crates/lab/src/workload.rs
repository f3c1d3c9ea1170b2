//! What the demo measures: the workloads of the published studies nearhost
//! answers, each turned into the loads every datapath runs, with what the
//! study found (quoted only where the figures are known) for the report.

use serde::{Deserialize, Serialize};

use crate::measure::{HttpFile, Load};

/// One workload, as named by `nearhost demo --workload`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Closed-loop request/response (netperf TCP_RR).
    #[default]
    Rr,
    /// Open-loop echo load at fractions of the host's maximum (wrk2, tcpkali).
    Rate,
    /// nginx serving 350 B and 4 KB files at constant rates (tcpkali → nginx).
    Http,
    /// UDP round trips by message size and loss at a fixed rate (sockperf, iperf3 -u).
    Udp,
    /// TCP throughput by socket buffer (iperf3 -w).
    Stream,
    /// Small-packet rate, one and many streams (sockperf throughput).
    Pps,
}

pub const ALL: [Workload; 6] =
    [Workload::Rr, Workload::Rate, Workload::Http, Workload::Udp, Workload::Stream, Workload::Pps];
/// What `nearhost demo` measures when no `--workload` is given.
pub const DEFAULT: [Workload; 2] = [Workload::Rr, Workload::Rate];

/// The open-loop levels, as fractions of the host's maximum.
pub const RATE_FRACTIONS: [f64; 4] = [0.3, 0.5, 0.7, 0.9];
/// nginx at the study's levels: 30–50% of the maximum, and beyond.
pub const HTTP_FRACTIONS: [f64; 3] = [0.3, 0.5, 0.7];
/// Connections of every open-loop run (echo and HTTP; keep-alive).
pub const RATE_CONNECTIONS: u32 = 8;
/// Asked of the packet-rate test: far above what any path here carries, so
/// the figure is what the path delivered.
pub const PPS_TARGET_PER_S: f64 = 2_000_000.0;
/// Smallest datagram `nearhost bench udp` sends (sequence number + time).
pub const PPS_SIZE: u32 = 16;
/// Datagram size of the loss test: iperf3 -u's default on a 1500-byte MTU,
/// less what the VXLAN datapath's smaller MTU needs.
pub const LOSS_SIZE: u32 = 1400;

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Rr => "rr",
            Workload::Rate => "rate",
            Workload::Http => "http",
            Workload::Udp => "udp",
            Workload::Stream => "stream",
            Workload::Pps => "pps",
        }
    }

    /// The report's section heading.
    pub fn title(self) -> &'static str {
        match self {
            Workload::Rr => "Request/response, closed loop (netperf TCP_RR)",
            Workload::Rate => "Echo at constant rates, open loop (wrk2, tcpkali)",
            Workload::Http => "nginx at constant rates: 350 B and 4 KB files (tcpkali → nginx)",
            Workload::Udp => {
                "UDP latency by message size, and loss at a fixed rate (sockperf, iperf3 -u)"
            }
            Workload::Stream => "TCP throughput by socket buffer (iperf3 -w)",
            Workload::Pps => "Small-packet rate, one and many streams (sockperf throughput)",
        }
    }

    /// What the study this workload reruns measured and found. Figures are
    /// quoted only where the study's own are known to this project.
    pub fn study(self) -> &'static str {
        match self {
            Workload::Rr => {
                "The veth article measured netperf TCP_RR between two hosts: 2,446 transactions/s \
                 from the host itself against 2,141 from a container behind a veth pair, 12.5% \
                 fewer."
            }
            Workload::Rate => {
                "The Kubernetes CNI study's method (constant request rates, latency from each \
                 request's intended send time, percentiles to 99.999) with a 1-byte echo in \
                 place of nginx: the load nearhost's latency goals are written against. The \
                 `http` workload reruns the study with nginx itself."
            }
            Workload::Http => {
                "The Kubernetes CNI study ran tcpkali against nginx in containers on IPvlan, \
                 Flannel host-gw and vxlan and on --net=host, nginx answering a 350 B \
                 response (100 B body + 250 B headers) or a 4 KB file over keep-alive \
                 connections, at 30–50% of the maximum and beyond, with percentiles to \
                 99.999 and the maximum rate of each datapath. Its absolute figures belong to \
                 its 2 × 18-CPU hosts and 10 Gbit/s NICs and are not restated here."
            }
            Workload::Udp => {
                "The SR-IOV paper measured UDP latency as the message grows and the UDP loss \
                 rate for the NIC itself, macvlan and an SR-IOV VF. Its figures are not \
                 restated here; run `nearhost demo` in the kernel lab's SR-IOV guest to set a \
                 VF beside them."
            }
            Workload::Stream => {
                "The SR-IOV paper measured iperf3 TCP throughput as the window grows, for the \
                 NIC itself, macvlan and an SR-IOV VF. Its figures are not restated here."
            }
            Workload::Pps => {
                "The cloud multi-NIC article measured sockperf throughput in packets per \
                 second, one and many streams, for a container behind a bridge against a NIC \
                 moved into the container. Its figures are not restated here; here every \
                 packet is echoed, so the rate counts round trips."
            }
        }
    }
}

/// The sizes and rates the workloads run with (`--udp-sizes`, `--windows`,
/// `--streams`, `--udp-rate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `udp`: payload sizes of the round-trip runs, bytes.
    pub udp_sizes: Vec<u32>,
    /// `udp`: the loss test's fixed rate, datagrams per second.
    pub udp_rate: f64,
    /// `stream`: socket buffers, bytes; `None` lets the kernel autotune.
    pub windows: Vec<Option<u32>>,
    /// `pps`: numbers of parallel streams.
    pub streams: Vec<u32>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            udp_sizes: vec![64, 1024, 8192],
            udp_rate: 20_000.0,
            windows: vec![Some(16 << 10), Some(64 << 10), Some(256 << 10), None],
            streams: vec![1, 4],
        }
    }
}

impl Params {
    /// Refuses what `nearhost bench` would refuse, before any lab is built.
    pub fn validate(&self) -> Result<(), String> {
        let nonempty = |flag: &str, n: usize| match n {
            0 => Err(format!("{flag}: give at least one value")),
            _ => Ok(()),
        };
        nonempty("--udp-sizes", self.udp_sizes.len())?;
        nonempty("--windows", self.windows.len())?;
        nonempty("--streams", self.streams.len())?;
        for &s in &self.udp_sizes {
            if !(16..=65_507).contains(&s) {
                return Err(format!(
                    "--udp-sizes: {s} is not a UDP payload size nearhost bench sends (16..=65507 bytes)"
                ));
            }
        }
        for w in self.windows.iter().flatten() {
            if !(1024..=256 << 20).contains(w) {
                return Err(format!(
                    "--windows: {w} is outside 1024..=268435456 bytes (use `auto` for the kernel's autotuning)"
                ));
            }
        }
        for &n in &self.streams {
            if !(1..=64).contains(&n) {
                return Err(format!("--streams: {n} is outside 1..=64"));
            }
        }
        if !(self.udp_rate.is_finite() && (1.0..=1e7).contains(&self.udp_rate)) {
            return Err(format!(
                "--udp-rate: {} is outside 1..=10000000 datagrams/s",
                self.udp_rate
            ));
        }
        Ok(())
    }
}

/// The calibrations a set of workloads needs before its rounds: the host's
/// maximum open-loop echo rate (`rate`) and nginx rate per file (`http`).
pub fn calibrations(workloads: &[Workload]) -> Vec<Load> {
    let mut out = Vec::new();
    if workloads.contains(&Workload::Rate) {
        out.push(Load::Max { connections: RATE_CONNECTIONS });
    }
    if workloads.contains(&Workload::Http) {
        out.extend(HttpFile::ALL.map(|file| Load::HttpMax { file }));
    }
    out
}

/// Every load the rounds run, in report order. `host_max` answers a
/// calibration load with the host's figure (requests/s).
pub fn loads(workloads: &[Workload], p: &Params, host_max: impl Fn(&Load) -> f64) -> Vec<Load> {
    let mut out = Vec::new();
    for w in ALL.iter().filter(|w| workloads.contains(w)) {
        match w {
            Workload::Rr => out.extend([Load::Rr { size: 1 }, Load::Rr { size: 64 }]),
            Workload::Rate => {
                let max = host_max(&Load::Max { connections: RATE_CONNECTIONS });
                out.extend(RATE_FRACTIONS.iter().map(|f| Load::Rate {
                    fraction: *f,
                    per_s: (max * f).max(1.0),
                    connections: RATE_CONNECTIONS,
                }));
            }
            Workload::Http => {
                for file in HttpFile::ALL {
                    let max = host_max(&Load::HttpMax { file });
                    out.push(Load::HttpMax { file });
                    out.extend(HTTP_FRACTIONS.iter().map(|f| Load::Http {
                        file,
                        fraction: *f,
                        per_s: (max * f).max(1.0),
                    }));
                }
            }
            Workload::Udp => {
                out.extend(p.udp_sizes.iter().map(|&size| Load::Udp { size }));
                out.push(Load::UdpLoss { size: LOSS_SIZE, per_s: p.udp_rate });
            }
            Workload::Stream => out.extend(p.windows.iter().map(|&window| Load::Stream { window })),
            Workload::Pps => out.extend(p.streams.iter().map(|&streams| Load::Pps { streams })),
        }
    }
    out
}

/// Parses `--windows`: sizes in bytes with an optional K/M suffix (powers of
/// two), or `auto`.
pub fn parse_window(text: &str) -> Result<Option<u32>, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("--windows: {text:?} is not a size (bytes, 64K, 1M or auto)"))?;
    u32::try_from(n << shift)
        .map(Some)
        .map_err(|_| format!("--windows: {text:?} is larger than 4 GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_has_loads_and_a_name_of_its_own() {
        let p = Params::default();
        for w in ALL {
            assert_eq!(ALL.iter().filter(|x| x.name() == w.name()).count(), 1, "{w:?}");
            let l = loads(&[w], &p, |_| 1000.0);
            assert!(!l.is_empty(), "{w:?}");
            assert!(l.iter().all(|x| x.workload() == w), "{w:?}: {l:?}");
            assert!(!w.study().is_empty() && !w.title().is_empty());
        }
        let keys: Vec<String> = loads(&DEFAULT, &p, |_| 1000.0).iter().map(Load::key).collect();
        assert_eq!(
            keys,
            ["rr-1B", "rr-64B", "rate-30pct", "rate-50pct", "rate-70pct", "rate-90pct"]
        );
        let http = loads(&[Workload::Http], &p, |l| match l {
            Load::HttpMax { file: HttpFile::Small } => 2000.0,
            _ => 1000.0,
        });
        assert!(matches!(http[1], Load::Http { per_s, .. } if per_s == 600.0), "{http:?}");
        let all = loads(&ALL, &p, |_| 1000.0);
        let mut keys: Vec<String> = all.iter().map(Load::key).collect();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "keys are unique: {keys:?}");
        assert_eq!(calibrations(&DEFAULT).len(), 1);
        assert_eq!(calibrations(&[Workload::Udp]).len(), 0);
        assert_eq!(calibrations(&ALL).len(), 3);
    }

    #[test]
    fn bad_sizes_are_refused_by_name() {
        let p = Params { udp_sizes: vec![0], ..Params::default() };
        assert!(p.validate().unwrap_err().contains("--udp-sizes: 0"));
        let p = Params { windows: vec![Some(0)], ..Params::default() };
        assert!(p.validate().unwrap_err().contains("--windows: 0"));
        let p = Params { streams: vec![0], ..Params::default() };
        assert!(p.validate().unwrap_err().contains("--streams: 0"));
        let p = Params { udp_rate: 0.0, ..Params::default() };
        assert!(p.validate().unwrap_err().contains("--udp-rate"));
        assert!(Params::default().validate().is_ok());
        assert_eq!(parse_window("64K"), Ok(Some(65536)));
        assert_eq!(parse_window("1m"), Ok(Some(1 << 20)));
        assert_eq!(parse_window("auto"), Ok(None));
        assert_eq!(parse_window("4000"), Ok(Some(4000)));
        assert!(parse_window("lots").unwrap_err().contains("\"lots\""));
        assert!(parse_window("8192M").is_err());
    }
}
