//! `nearhost lab` and `nearhost demo`: argument parsing and printing; the work
//! is in the `nearhost-lab` crate.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nearhost_lab::demo::{self, DemoOptions};
use nearhost_lab::signals::StopFlag;
use nearhost_lab::workload::{self, Params, Workload};
use nearhost_lab::{plan, Dp};

/// Names from comma-separated (and repeated) values of `flag`, each one of
/// `all` (by `name`), without repeats, in the order given.
fn parse_names<T: Copy + PartialEq + 'static>(
    flag: &str, what: &str, values: &[&str], all: &[T], name: fn(T) -> &'static str,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for n in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        let item = all.iter().copied().find(|x| name(*x) == n).with_context(|| {
            let known: Vec<&str> = all.iter().map(|x| name(*x)).collect();
            format!("{flag}: unknown {what} {n:?} (known: {})", known.join(", "))
        })?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

fn parse_datapaths(list: &str) -> anyhow::Result<Vec<Dp>> {
    let mut out = vec![Dp::Host];
    for dp in parse_names("--datapaths", "datapath", &[list], &plan::ALL, Dp::name)? {
        if !out.contains(&dp) {
            out.push(dp);
        }
    }
    Ok(out)
}

/// `--workload` values: names, comma-separated or repeated, or `all`; in
/// report order, whatever order they were given in.
fn parse_workloads(values: &[String]) -> anyhow::Result<Vec<Workload>> {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    if values.iter().flat_map(|v| v.split(',')).any(|n| n.trim() == "all") {
        return Ok(workload::ALL.to_vec());
    }
    let mut out = parse_names("--workload", "workload", &values, &workload::ALL, Workload::name)
        .map_err(|e| anyhow::anyhow!("{e}, or all"))?;
    if out.is_empty() {
        out = workload::DEFAULT.to_vec();
    }
    out.sort();
    Ok(out)
}

/// A comma-separated list of numbers for `flag`.
fn parse_list<T: std::str::FromStr>(flag: &str, text: &str) -> anyhow::Result<Vec<T>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| anyhow::anyhow!("{flag}: {s:?} is not a number")))
        .collect()
}

fn params(a: &DemoArgs) -> anyhow::Result<Params> {
    let defaults = Params::default();
    let p = Params {
        udp_sizes: match &a.udp_sizes {
            Some(t) => parse_list("--udp-sizes", t)?,
            None => defaults.udp_sizes,
        },
        udp_rate: a.udp_rate.unwrap_or(defaults.udp_rate),
        windows: match &a.windows {
            Some(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(workload::parse_window)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            None => defaults.windows,
        },
        streams: match &a.streams {
            Some(t) => parse_list("--streams", t)?,
            None => defaults.streams,
        },
    };
    p.validate().map_err(anyhow::Error::msg)?;
    Ok(p)
}

fn all_datapaths() -> String {
    plan::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(",")
}

#[derive(Args)]
pub struct DemoArgs {
    /// One short round (about a minute); the full run takes a few minutes.
    #[arg(long)]
    quick: bool,
    /// Datapaths to compare, comma-separated (the host baseline is always included).
    #[arg(long, default_value_t = all_datapaths())]
    datapaths: String,
    /// What to measure, comma-separated or repeated: rr, rate, http, udp,
    /// stream, pps, or all [default: rr,rate].
    #[arg(long, value_name = "NAME")]
    workload: Vec<String>,
    /// udp: datagram sizes of the round-trip runs, bytes [default: 64,1024,8192].
    #[arg(long, value_name = "BYTES,…")]
    udp_sizes: Option<String>,
    /// udp: the fixed rate the loss is measured at, datagrams/s [default: 20000].
    #[arg(long, value_name = "PER_SECOND")]
    udp_rate: Option<f64>,
    /// stream: socket buffers (iperf3 -w), e.g. 16K,64K,256K,auto [default: 16K,64K,256K,auto].
    #[arg(long, value_name = "SIZE,…")]
    windows: Option<String>,
    /// pps: numbers of parallel streams [default: 1,4].
    #[arg(long, value_name = "N,…")]
    streams: Option<String>,
    /// Leave the lab up afterwards to explore it (`nearhost lab down` removes it).
    #[arg(long)]
    keep: bool,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "nearhost-demo")]
    out: PathBuf,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Rounds (default: 3, or 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: Option<u32>,
    /// Seconds per measurement (default: 4, or 0.8 with --quick; at most 60).
    #[arg(long)]
    duration: Option<f64>,
    /// Measure nothing: render the table and report.html (into --out) from a saved report.json.
    #[arg(long, value_name = "REPORT_JSON")]
    from: Option<PathBuf>,
}

pub fn demo(a: DemoArgs) -> anyhow::Result<()> {
    if let Some(d) = a.duration {
        if !(0.2..=60.0).contains(&d) {
            bail!("--duration: {d} is outside 0.2..60 seconds");
        }
    }
    if let Some(path) = &a.from {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--from: cannot read {}", path.display()))?;
        let report = nearhost_lab::report::DemoReport::from_json(&text)
            .with_context(|| format!("--from: {} is not a demo report", path.display()))?;
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("--out: cannot create {}", a.out.display()))?;
        std::fs::write(a.out.join("report.html"), nearhost_lab::report::html::render(&report))?;
        print!("{}", nearhost_lab::report::table::render(&report));
        println!("\nreport: {}", a.out.join("report.html").display());
        return Ok(());
    }
    let mut opts = DemoOptions {
        quick: a.quick,
        datapaths: parse_datapaths(&a.datapaths)?,
        workloads: parse_workloads(&a.workload)?,
        params: params(&a)?,
        host: None, // filled in below, after the estimate is out
        lab_sysctls: crate::cli_doctor::tune_sysctls(),
        keep: a.keep,
        out: a.out.clone(),
        rounds: a.rounds,
        duration_s: a.duration,
    };
    // Said before anything is built, so a long run can be called off.
    let names: Vec<&str> = opts.workloads.iter().map(|w| w.name()).collect();
    eprintln!(
        "nearhost demo: {} ({} client runs if all {} datapaths are available): about {} — Ctrl-C stops it and removes the lab",
        names.join(", "),
        opts.runs(),
        opts.datapaths.len(),
        human_duration(opts.estimate_s())
    );
    // The header's host summary: doctor's probes take a moment and touch
    // nothing; a failure is noted in the report, not fatal.
    opts.host = Some(crate::cli_doctor::demo_summary().unwrap_or_else(|e| {
        nearhost_lab::report::HostSummary {
            tuning: format!("doctor failed: {e:#}"),
            ..Default::default()
        }
    }));
    let stop = StopFlag::install()?;
    let report = demo::run(&opts, &stop)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", nearhost_lab::report::table::render(&report));
        println!(
            "\nreport: {}  data: {}",
            a.out.join("report.html").display(),
            a.out.join("report.json").display()
        );
        if a.keep {
            println!("the lab is still up: `nearhost lab status`, `ip netns exec nhlab-h1 …`, `nearhost lab down`");
        }
    }
    Ok(())
}

fn human_duration(s: f64) -> String {
    if s < 90.0 {
        format!("{:.0} s", s.max(1.0))
    } else {
        format!("{:.0} min", (s / 60.0).ceil())
    }
}

#[derive(Subcommand)]
pub enum LabCmd {
    /// Build the lab: ToR, two hosts, one container per datapath on each, bench servers.
    Up {
        #[arg(long, default_value_t = all_datapaths())]
        datapaths: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove every lab namespace, link and process.
    Down,
    /// Show what is up.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub fn lab(cmd: LabCmd) -> anyhow::Result<()> {
    match cmd {
        LabCmd::Up { datapaths, json } => {
            let state = nearhost_lab::up(&parse_datapaths(&datapaths)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                print_state(&state);
            }
        }
        LabCmd::Down => {
            let removed = nearhost_lab::down()?;
            println!("lab down: removed {} namespaces", removed.len());
        }
        LabCmd::Status { json } => {
            match nearhost_lab::status()? {
                None if json => println!("null"),
                None => println!("no lab is up"),
                Some((state, ns)) if json => println!(
                    "{}",
                    serde_json::json!({"state": state, "namespaces": ns.iter().map(|(n, up)| serde_json::json!({"name": n, "present": up})).collect::<Vec<_>>()})
                ),
                Some((state, ns)) => {
                    print_state(&state);
                    let missing: Vec<&String> =
                        ns.iter().filter(|(_, up)| !up).map(|(n, _)| n).collect();
                    if !missing.is_empty() {
                        println!("missing namespaces (the lab is damaged; `nearhost lab down`): {missing:?}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_state(s: &nearhost_lab::LabState) {
    println!("lab up (by `nearhost {}`, pid {}); namespaces: nhlab-tor, nhlab-h1, nhlab-h2 and one per container", s.owner_command, s.owner.pid);
    println!(
        "  {:<9} {:<22} {:<16} {:<22} ",
        "datapath", "client (h1)", "server (h2)", "bench target"
    );
    for d in &s.datapaths {
        if !d.available {
            println!(
                "  {:<9} {}",
                d.datapath.name(),
                d.reason.as_deref().unwrap_or("not available")
            );
            continue;
        }
        let ip = |i: Option<std::net::IpAddr>| i.map(|i| i.to_string()).unwrap_or_default();
        println!(
            "  {:<9} {:<22} {:<16} {:<22}",
            d.datapath.name(),
            format!("{} {}", d.client_ns, ip(d.client_ip)),
            ip(d.server_ip),
            d.target.as_deref().unwrap_or("")
        );
    }
    println!(
        "try: ip netns exec {} nearhost bench rr --target {}",
        plan::CLIENT.container_ns(Dp::Macvlan),
        s.datapaths
            .iter()
            .find(|d| d.datapath == Dp::Macvlan)
            .and_then(|d| d.target.clone())
            .unwrap_or_default()
    );
}
