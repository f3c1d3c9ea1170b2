//! `nearhost tune plan|apply|revert|status`: the host tuning of
//! `nearhost-tune` on the command line. `plan` reads and prints; `apply` and
//! `revert` write the host's IRQ affinity, RPS/XPS/RFS and sysctls, so on the
//! real root they need `--host-is-mine` (tests and the docs run them on a
//! lab guest or on a fake tree through `--root`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nearhost_attach::netdef::NetDir;
use nearhost_tune::{CpuSet, Host, Options, Plan, Profile};
use serde_json::json;

#[derive(Subcommand)]
pub enum TuneCmd {
    /// Print the changes a profile makes on this host (old → new, and why).
    Plan(TuneArgs),
    /// Make them, saving the previous values for `revert` (idempotent).
    Apply {
        #[command(flatten)]
        args: TuneArgs,
        /// Required on a real host: this host is yours to tune (apply and
        /// revert change root-namespace settings every process shares).
        #[arg(long)]
        host_is_mine: bool,
    },
    /// Restore every value apply changed, exactly, and forget them.
    Revert {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        host_is_mine: bool,
    },
    /// What apply changed and whether the values still hold.
    Status(Common),
}

#[derive(Args)]
pub struct Common {
    /// Where apply keeps the previous values.
    #[arg(long, default_value = nearhost_tune::apply::DEFAULT_STATE)]
    state: PathBuf,
    /// The root whose proc/ and sys/ are read and written (a lab guest's
    /// `/`, or a fake tree in tests).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TuneArgs {
    /// latency (the study's tuning) or throughput.
    #[arg(long, default_value = "latency")]
    profile: String,
    /// The NICs to tune (repeat); default: the parent NICs of the networks
    /// in --net-dir, else every NIC with queue interrupts.
    #[arg(long = "nic")]
    nics: Vec<String>,
    /// CPUs kept for applications (a CPU list, `18-35`): no IRQs, no RPS.
    #[arg(long, default_value = "")]
    reserve_cpus: String,
    /// Connections RFS is sized for.
    #[arg(long, default_value_t = 60_000)]
    connections: u32,
    /// The CNI network configs whose parent NICs are tuned by default.
    #[arg(long, default_value = "/etc/cni/net.d")]
    net_dir: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub fn run(cmd: TuneCmd) -> anyhow::Result<()> {
    match cmd {
        TuneCmd::Plan(a) => {
            let (_, plan) = make_plan(&a)?;
            print_plan(&plan, a.common.json, "plan")
        }
        TuneCmd::Apply { args, host_is_mine } => {
            guard(&args.common.root, host_is_mine, "apply")?;
            let (_, plan) = make_plan(&args)?;
            let made = nearhost_tune::apply(&args.common.root, &plan, &args.common.state)?;
            let done = Plan { changes: made, ..plan };
            print_plan(&done, args.common.json, "apply")
        }
        TuneCmd::Revert { common, host_is_mine } => {
            guard(&common.root, host_is_mine, "revert")?;
            let restored = nearhost_tune::revert(&common.root, &common.state)?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&json!({"restored": restored}))?);
            } else if restored.is_empty() {
                println!("nothing to revert: no values saved in {}", common.state.display());
            } else {
                for w in &restored {
                    println!("{:<44} {} → {}", w.what, w.applied, w.original);
                }
                println!("{} values restored", restored.len());
            }
            Ok(())
        }
        TuneCmd::Status(common) => {
            let (saved, now) = nearhost_tune::status(&common.root, &common.state)?;
            let drifted = now.iter().filter(|s| !s.holds).count();
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "applied": !saved.writes.is_empty(), "profile": saved.profile,
                        "settings": now, "changed_since": drifted}))?
                );
            } else if saved.writes.is_empty() {
                println!("not tuned by nearhost (no values saved in {})", common.state.display());
            } else {
                println!(
                    "tuned by nearhost: profile {}, {} values saved in {}",
                    saved.profile.map_or("?".into(), |p| p.to_string()),
                    now.len(),
                    common.state.display()
                );
                for s in &now {
                    let cur = s.current.as_deref().unwrap_or("(unreadable)");
                    let mark = if s.holds { "" } else { "  CHANGED since apply" };
                    println!("{:<44} {} (was {}){mark}", s.what, cur, s.original);
                }
            }
            if drifted > 0 {
                bail!("{drifted} values changed since nearhost applied them");
            }
            Ok(())
        }
    }
}

fn guard(root: &Path, host_is_mine: bool, what: &str) -> anyhow::Result<()> {
    if root == Path::new("/") && !host_is_mine {
        bail!(
            "tune {what} changes this host's IRQ affinity, RPS/XPS/RFS and sysctls, which every \
             process shares; pass --host-is-mine if this host is yours to tune \
             (`nearhost tune plan` shows exactly what changes)"
        );
    }
    Ok(())
}

fn make_plan(a: &TuneArgs) -> anyhow::Result<(Host, Plan)> {
    // Options first: a typo changes and reads nothing.
    let profile: Profile = a.profile.parse()?;
    let reserve =
        CpuSet::parse_list(&a.reserve_cpus).map_err(|e| anyhow::anyhow!("--reserve-cpus: {e}"))?;
    let host = Host::read(&a.common.root).context("reading the host")?;
    let nics = if a.nics.is_empty() { network_parents(&a.net_dir, &host) } else { a.nics.clone() };
    let opts = Options { profile, nics, reserve, connections: a.connections };
    let plan = nearhost_tune::plan(&host, &opts)?;
    Ok((host, plan))
}

/// The parent NICs (`master`, `pf`, `pfs`, `device`) of the nearhost
/// networks in `dir` that this host has.
pub(crate) fn network_parents(dir: &Path, host: &Host) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in NetDir::new(dir).list().unwrap_or_default() {
        let Ok(net) = entry.network else { continue };
        for p in &net.plugins {
            let mut names: Vec<&str> = ["master", "pf", "device"]
                .iter()
                .filter_map(|k| p.get(*k).and_then(|v| v.as_str()))
                .collect();
            if let Some(list) = p.get("pfs").and_then(|v| v.as_array()) {
                names.extend(list.iter().filter_map(|v| v.as_str()));
            }
            for n in names {
                if host.nic(n).is_some() && !out.iter().any(|o| o == n) {
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

fn print_plan(plan: &Plan, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    println!(
        "nearhost tune {verb}: profile {}, NICs {}, reserved CPUs {}, IRQ CPUs {}",
        plan.profile,
        if plan.nics.is_empty() { "none".into() } else { plan.nics.join(", ") },
        if plan.reserve.is_empty() { "none".into() } else { plan.reserve.to_list() },
        if plan.irq_cpus.is_empty() { "none".into() } else { plan.irq_cpus.to_list() },
    );
    for c in &plan.changes {
        println!("  {:<44} {} → {}", c.what, c.old, c.new);
        println!("  {:<44} ({})", "", c.why);
    }
    let n = plan.changes.len();
    let verb_done = if verb == "apply" { "made" } else { "to make" };
    println!("{n} changes {verb_done}, {} already as planned", plan.unchanged.len());
    for note in &plan.notes {
        println!("note: {note}");
    }
    Ok(())
}
