//! `nearhost demo`: lab up, servers, the host's maximum rate, then rounds of
//! measurements with every datapath interleaved (A B C … A B C …), then lab
//! down — also on error, Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{LabError, Result};
use crate::measure::{self, Load, Service, Timing};
use crate::nginx;
use crate::plan::{self, Dp};
use crate::progress::Progress;
use crate::report::{
    self, DatapathInfo, DatapathResult, DemoReport, Figures, Measurement, Settings,
};
use crate::signals::StopFlag;
use crate::state::{LabDatapath, LabState};
use crate::topology;
use crate::workload::{self, Params, Workload, RATE_CONNECTIONS};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub quick: bool,
    pub datapaths: Vec<Dp>,
    pub workloads: Vec<Workload>,
    pub params: Params,
    /// The machine as doctor and tune see it, for the report's header.
    pub host: Option<report::HostSummary>,
    /// Sysctls (dotted, e.g. `net.ipv4.tcp_tw_reuse`) whose values the
    /// report records for each lab host.
    pub lab_sysctls: Vec<String>,
    pub keep: bool,
    pub out: PathBuf,
    /// Overrides (defaults depend on `quick`).
    pub rounds: Option<u32>,
    pub duration_s: Option<f64>,
}

impl DemoOptions {
    fn timing(&self) -> (u32, f64, f64) {
        let (rounds, duration, warmup): (u32, f64, f64) =
            if self.quick { (1, 0.8, 0.2) } else { (3, 4.0, 1.0) };
        let duration = self.duration_s.unwrap_or(duration);
        (self.rounds.unwrap_or(rounds), duration, warmup.min(duration / 4.0))
    }

    /// Client runs the demo will make (calibrations, then every load on
    /// every datapath in every round), counting every requested datapath.
    pub fn runs(&self) -> usize {
        let (rounds, _, _) = self.timing();
        let loads = workload::loads(&self.workloads, &self.params, |_| 1.0).len();
        3 * workload::calibrations(&self.workloads).len()
            + rounds as usize * loads * self.datapaths.len()
    }

    /// How long the demo will take, seconds: what it says before it starts.
    /// Each run is its window, warm-up and about 0.35 s of starting the
    /// client and draining; building and removing the lab about 10 s.
    pub fn estimate_s(&self) -> f64 {
        let (_, duration, warmup) = self.timing();
        10.0 + self.runs() as f64 * (duration + warmup + 0.35)
    }
}

/// Takes the lab down when dropped, unless kept; also on panic and early return.
struct LabGuard {
    keep: bool,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let state = LabState::load().ok().flatten();
        if let Err(e) = topology::down(state.as_ref()) {
            eprintln!("nearhost demo: taking the lab down failed: {e}; run `nearhost lab down`");
        }
    }
}

/// Client and server CPUs: apart when there are at least two.
fn cpus() -> (Option<usize>, Option<usize>) {
    match std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) {
        n if n >= 2 => (Some(0), Some(1)),
        _ => (None, None),
    }
}

/// Starts one bench server per available datapath, and nginx where the
/// `http` workload needs it; records their pids as it goes.
fn start_servers(state: &mut LabState, server_cpu: Option<usize>, http: bool) -> Result<()> {
    for d in state.datapaths.clone().iter().filter(|d| d.available) {
        let server = measure::start_server(&d.server_ns, plan::SERVER_PORT, server_cpu)?;
        state.servers.push(server);
        state.save()?;
        if http {
            let dir = std::path::Path::new(crate::state::LAB_DIR)
                .join(format!("nginx-{}", d.datapath.name()));
            let listen = format!("0.0.0.0:{}", plan::HTTP_PORT);
            let cfg = nginx::Config { dir: &dir, listen: &listen, workers: 1, cpu: server_cpu };
            let procs = nginx::start_in(&d.server_ns, &cfg, plan::HTTP_PORT)?;
            state.servers.extend(procs);
            state.save()?;
        }
    }
    Ok(())
}

pub fn run(opts: &DemoOptions, stop: &StopFlag) -> Result<DemoReport> {
    let started = Instant::now();
    let (rounds, duration_s, warmup_s) = opts.timing();
    let mut state = LabState::claim("demo")?;
    let _guard = LabGuard { keep: opts.keep };
    let (client_cpu, server_cpu) = cpus();
    let timing = Timing { duration_s, warmup_s, client_cpu };
    let mut progress = Progress::new(1 + opts.runs());

    let usable = build_lab(&mut state, opts, server_cpu, &mut progress, stop)?;
    let lab_hosts = topology::sysctls(&opts.lab_sysctls)?;
    let mut host_max = BTreeMap::new();
    for load in workload::calibrations(&opts.workloads) {
        let max = host_maximum(&usable, &load, &timing, &mut progress, stop)?;
        host_max.insert(load.key(), max);
    }
    let loads = workload::loads(&opts.workloads, &opts.params, |l| host_max[&l.key()]);
    let samples = measure_rounds(&usable, &loads, rounds, &timing, &mut progress, stop)?;
    progress.finish();

    let measurements = measurements(&loads, &usable, &samples);
    let rep = DemoReport {
        schema: report::SCHEMA.into(),
        kernel: nearhost_kernel::kernel_release(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_unix: state.started_unix,
        wall_time_s: started.elapsed().as_secs_f64(),
        settings: Settings {
            quick: opts.quick,
            rounds,
            duration_s,
            warmup_s,
            rate_connections: RATE_CONNECTIONS,
            client_cpu,
            server_cpu,
            workloads: opts.workloads.clone(),
        },
        host_max_per_s: host_max.get(&Load::Max { connections: RATE_CONNECTIONS }.key()).copied(),
        host_http_max_per_s: crate::measure::HttpFile::ALL
            .iter()
            .filter_map(|&file| {
                host_max.get(&Load::HttpMax { file }.key()).map(|v| (file.name().to_string(), *v))
            })
            .collect(),
        host: opts.host.clone(),
        lab_hosts,
        datapaths: state.datapaths.iter().map(datapath_info).collect(),
        workloads: report::sections(&opts.workloads, &measurements),
        measurements,
    };
    write_files(opts, &rep)?;
    Ok(rep)
}

/// Builds the lab and starts the servers; returns the datapaths that could be
/// attached (the others are noted with their reason). The host baseline must
/// be among them.
fn build_lab(
    state: &mut LabState, opts: &DemoOptions, server_cpu: Option<usize>, progress: &mut Progress,
    stop: &StopFlag,
) -> Result<Vec<LabDatapath>> {
    progress.step("building the lab");
    topology::up(state, &opts.datapaths)?;
    stop.check()?;
    start_servers(state, server_cpu, opts.workloads.contains(&Workload::Http))?;
    progress.advance();
    for d in state.datapaths.iter().filter(|d| !d.available) {
        progress.note(&format!(
            "{}: {}",
            d.datapath.name(),
            d.reason.as_deref().unwrap_or("not available")
        ));
    }
    let usable: Vec<LabDatapath> =
        state.datapaths.iter().filter(|d| d.available).cloned().collect();
    if !usable.iter().any(|d| d.datapath == Dp::Host) {
        return Err(LabError::Other("the host baseline must be among --datapaths".into()));
    }
    Ok(usable)
}

/// The host's maximum for a saturating `load`: the best of three runs (one
/// run can be cut short by anything else the machine does, and every rate
/// level is a fraction of this figure).
fn host_maximum(
    usable: &[LabDatapath], load: &Load, timing: &Timing, progress: &mut Progress, stop: &StopFlag,
) -> Result<f64> {
    let host = usable.iter().find(|d| d.datapath == Dp::Host).expect("checked by build_lab");
    let mut host_max: f64 = 0.0;
    for attempt in 1..=3 {
        progress.step(&format!("host: {} ({attempt}/3)", load.key()));
        let max = measure::run(&host.client_ns, target(host, load), load, timing, stop)?;
        host_max = host_max.max(max.transactions_per_s);
        progress.advance();
    }
    if host_max < 10.0 {
        return Err(LabError::Bench {
            datapath: "host".into(),
            kind: load.key(),
            msg: format!(
                "the host path carried only {host_max:.0} requests/s; nothing to measure against"
            ),
        });
    }
    Ok(host_max)
}

/// Where `load`'s client connects for datapath `d`.
fn target<'a>(d: &'a LabDatapath, load: &Load) -> &'a str {
    let t = match load.service() {
        Service::Bench => &d.target,
        Service::Nginx => &d.http_target,
    };
    t.as_deref().unwrap_or_default()
}

/// Each round's figures, by (load index, datapath).
type Samples = BTreeMap<(usize, Dp), Vec<Figures>>;

/// Every round runs every datapath once per load, in an order rotated per
/// round and load (A B C, B C A, …), so neither drift nor going first
/// favours one datapath.
fn measure_rounds(
    usable: &[LabDatapath], loads: &[Load], rounds: u32, timing: &Timing, progress: &mut Progress,
    stop: &StopFlag,
) -> Result<Samples> {
    let mut samples = Samples::new();
    let n = usable.len();
    for round in 0..rounds {
        for (li, load) in loads.iter().enumerate() {
            for d in (0..n).map(|k| &usable[(k + round as usize + li) % n]) {
                stop.check()?;
                progress.step(&format!(
                    "round {}/{rounds}: {} {}",
                    round + 1,
                    load.key(),
                    d.datapath.name()
                ));
                let r = measure::run(&d.client_ns, target(d, load), load, timing, stop)?;
                samples.entry((li, d.datapath)).or_default().push(Figures::from_report(&r));
                progress.advance();
            }
        }
    }
    Ok(samples)
}

/// One measurement per load: each datapath's rounds, median and ratios to the host.
fn measurements(loads: &[Load], usable: &[LabDatapath], samples: &Samples) -> Vec<Measurement> {
    let rounds_of = |li: usize, dp: Dp| samples.get(&(li, dp)).cloned().unwrap_or_default();
    loads
        .iter()
        .enumerate()
        .map(|(li, load)| {
            let host_rounds = rounds_of(li, Dp::Host);
            let results = usable
                .iter()
                .map(|d| {
                    let rounds = rounds_of(li, d.datapath);
                    DatapathResult {
                        datapath: d.datapath,
                        median: report::median_figures(&rounds),
                        ratio_to_host: (d.datapath != Dp::Host)
                            .then(|| report::ratios(&rounds, &host_rounds)),
                        rounds,
                    }
                })
                .collect();
            Measurement {
                workload: load.workload(),
                metric: load.metric(),
                key: load.key(),
                label: load.label(),
                target_per_s: load.target_per_s(),
                results,
            }
        })
        .collect()
}

fn datapath_info(d: &LabDatapath) -> DatapathInfo {
    DatapathInfo {
        datapath: d.datapath,
        description: d.datapath.describe().into(),
        available: d.available,
        reason: d.reason.clone(),
        target: d.target.clone(),
    }
}

fn write_files(opts: &DemoOptions, rep: &DemoReport) -> Result<()> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| LabError::io(format!("create {}", opts.out.display()), e))?;
    let json = serde_json::to_string_pretty(rep).expect("report serializes");
    for (name, body) in [("report.json", json), ("report.html", report::html::render(rep))] {
        let p = opts.out.join(name);
        std::fs::write(&p, body).map_err(|e| LabError::io(format!("write {}", p.display()), e))?;
    }
    Ok(())
}
