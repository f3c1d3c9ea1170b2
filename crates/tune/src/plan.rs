//! The change list a profile asks for on a host: pure, from a [`Host`].
//!
//! The `latency` profile is the Kubernetes networking study's hand tuning
//! (tcpkali → nginx, percentiles to 99.999), made general:
//!
//! - each NIC queue's IRQ on the first core of a NUMA node, the NIC's node
//!   first (the study: "NIC IRQs pinned to the first core of each NUMA node");
//! - RPS on every receive queue to the CPUs that are neither IRQ CPUs nor
//!   reserved for applications (the study's `rps_cpus` = `00000000,0003fdfe`
//!   on 2 × 18 CPUs with CPUs 18–35 left to nginx);
//! - XPS per NUMA node: each transmit queue is used by its node's CPUs;
//! - RFS sized for the connections (`rps_sock_flow_entries` 65536 for 60k,
//!   `rps_flow_cnt` the entries divided among the receive queues);
//! - the sysctls of the study's list that current kernels still have, and
//!   busy polling.
//!
//! The `throughput` profile spreads the queues' IRQs over the NIC node's
//! cores (one queue per core) and leaves RPS off (RSS already spreads).
//!
//! No CPU gets both IRQ and RPS work; reserved CPUs get neither.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::host::{Host, Nic};
use crate::{CpuSet, Error};

/// The sysctls a profile may set (paths under the root). The migration cost
/// moved from `/proc/sys/kernel` to debugfs in Linux 5.13.
pub const SYSCTL_PATHS: &[&str] = &[
    "proc/sys/net/core/rps_sock_flow_entries",
    "proc/sys/net/ipv4/tcp_tw_reuse",
    "proc/sys/net/ipv4/tcp_fin_timeout",
    "proc/sys/net/ipv4/tcp_slow_start_after_idle",
    "proc/sys/net/ipv4/ip_local_port_range",
    "proc/sys/net/ipv4/tcp_max_tw_buckets",
    "proc/sys/fs/file-max",
    "proc/sys/kernel/sched_migration_cost_ns",
    "sys/kernel/debug/sched/migration_cost_ns",
    "proc/sys/net/core/busy_poll",
    "proc/sys/net/core/busy_read",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Latency,
    Throughput,
}

impl Profile {
    pub const NAMES: &[&str] = &["latency", "throughput"];
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "latency" => Ok(Profile::Latency),
            "throughput" => Ok(Profile::Throughput),
            _ => Err(Error::Input(format!(
                "profile: {s:?} is not one of {}",
                Profile::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Latency => "latency",
            Profile::Throughput => "throughput",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub profile: Profile,
    /// The NICs to tune; empty: every NIC with queue IRQs.
    pub nics: Vec<String>,
    /// CPUs kept for applications: no IRQ and no RPS work.
    pub reserve: CpuSet,
    /// Concurrent connections RFS is sized for.
    pub connections: u32,
}

impl Options {
    pub fn new(profile: Profile) -> Self {
        Options { profile, nics: Vec::new(), reserve: CpuSet::new(), connections: 60_000 }
    }
}

/// One write: `path` (under the host's root) from `old` to `new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What it is, for people: `eth0 IRQ 41 (eth0-TxRx-1) affinity`.
    pub what: String,
    pub path: String,
    /// The current value, in the form `new` is written in.
    pub old: String,
    pub new: String,
    /// The study's line this automates, or nearhost's reason.
    pub why: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub profile: Profile,
    pub reserve: CpuSet,
    pub nics: Vec<String>,
    /// The CPUs that take the NICs' IRQs.
    pub irq_cpus: CpuSet,
    /// The writes that change something.
    pub changes: Vec<Change>,
    /// Settings already at their planned value.
    pub unchanged: Vec<Change>,
    /// What the plan could not do here, and why.
    pub notes: Vec<String>,
}

const WHY_IRQ_LATENCY: &str =
    "the study: NIC IRQs pinned to the first core of each NUMA node (/proc/irq/N/smp_affinity_list)";
const WHY_IRQ_THROUGHPUT: &str = "one queue's IRQ per core of the NIC's NUMA node";
const WHY_RPS: &str = "the study: RPS masks keep packet work off the IRQ cores (rx-N/rps_cpus = 00000000,0003fdfe on 2 x 18 CPUs)";
const WHY_RPS_OFF: &str = "throughput: RSS spreads the queues, RPS would add an IPI per packet";
const WHY_XPS: &str = "the study: XPS per NUMA node (tx-N/xps_cpus)";
const WHY_XPS_THROUGHPUT: &str = "XPS: a queue is used by the core that takes its IRQ";
const WHY_RFS_FLOWS: &str =
    "the study: RFS sized for 60k connections (rps_flow_cnt 32768 per queue)";
const WHY_RFS_TABLE: &str =
    "the study: RFS sized for 60k connections (rps_sock_flow_entries 65536)";

/// The sysctls of a profile: (path, value, why).
fn sysctls(profile: Profile) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v = vec![
        ("proc/sys/net/ipv4/tcp_tw_reuse", "1", "the study's sysctl list: tcp_tw_reuse"),
        ("proc/sys/net/ipv4/tcp_fin_timeout", "10", "the study's sysctl list: tcp_fin_timeout 10"),
        (
            "proc/sys/net/ipv4/tcp_slow_start_after_idle",
            "0",
            "the study's sysctl list: tcp_slow_start_after_idle 0",
        ),
        (
            "proc/sys/net/ipv4/ip_local_port_range",
            "1024 65535",
            "the study's sysctl list: the port range (value: nearhost's, the widest unprivileged range)",
        ),
        (
            "proc/sys/net/ipv4/tcp_max_tw_buckets",
            "2000000",
            "the study's sysctl list: tcp_max_tw_buckets (value: nearhost's)",
        ),
        ("proc/sys/fs/file-max", "2097152", "the study's sysctl list: file-max (value: nearhost's)"),
    ];
    if profile == Profile::Latency {
        v.push((
            "proc/sys/net/core/busy_poll",
            "50",
            "busy polling, as tuned's network-latency profile (50 µs)",
        ));
        v.push((
            "proc/sys/net/core/busy_read",
            "50",
            "busy polling, as tuned's network-latency profile (50 µs)",
        ));
    }
    v
}

/// Sysctls that are limits: planned only where the host's value is lower.
const RAISE_ONLY: &[&str] = &["proc/sys/net/ipv4/tcp_max_tw_buckets", "proc/sys/fs/file-max"];

const MIGRATION_COST: &str = "5000000";
const WHY_MIGRATION: &str =
    "the study: sched_migration_cost_ns (value: nearhost's; tasks stay on their CPU for 5 ms)";

/// The plan for `host` under `opts`; bad options are refused before anything
/// is planned.
pub fn plan(host: &Host, opts: &Options) -> Result<Plan, Error> {
    let all = host.all_cpus();
    if all.is_empty() {
        return Err(Error::Input("the host has no online CPUs".into()));
    }
    let outside = opts.reserve.minus(&all);
    if !outside.is_empty() {
        return Err(Error::Input(format!(
            "--reserve-cpus: CPU {outside} is not on this machine (its CPUs are {all})"
        )));
    }
    let usable = all.minus(&opts.reserve);
    if usable.is_empty() {
        return Err(Error::Input(format!(
            "--reserve-cpus: {} reserves every CPU; leave at least one for the NICs' interrupts",
            opts.reserve
        )));
    }
    let nics: Vec<&Nic> = if opts.nics.is_empty() {
        host.nics.iter().filter(|n| !n.queue_irqs.is_empty()).collect()
    } else {
        opts.nics
            .iter()
            .map(|name| {
                host.nic(name).ok_or_else(|| {
                    let known: Vec<&str> = host.nics.iter().map(|n| n.name.as_str()).collect();
                    Error::Input(format!(
                        "--nic: no NIC named {name:?} here (NICs with a device: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let ncpus = host.ncpus();
    let mut writes: Vec<Change> = Vec::new();
    let mut notes = Vec::new();
    let mut change = |what: String, path: String, old: String, new: String, why: &'static str| {
        writes.push(Change { what, path, old, new, why });
    };

    // IRQ CPUs first, for every NIC: RPS keeps off all of them.
    let mut irq_plan: Vec<Vec<u32>> = Vec::new();
    for nic in &nics {
        let order = node_order(host, nic);
        let cpus: Vec<u32> = match opts.profile {
            Profile::Latency => {
                order.iter().filter_map(|n| host.node_cpus(*n).intersect(&usable).first()).collect()
            }
            Profile::Throughput => {
                let mut v = Vec::new();
                for n in &order {
                    for c in host.node_cpus(*n).intersect(&usable).iter() {
                        // One per core: the core's first usable thread.
                        if host.core_siblings(c).intersect(&usable).first() == Some(c) {
                            v.push(c);
                        }
                    }
                }
                v
            }
        };
        irq_plan.push(cpus);
    }
    let mut irq_cpus = CpuSet::new();
    for (nic, cpus) in nics.iter().zip(&irq_plan) {
        if nic.queue_irqs.is_empty() {
            notes.push(format!(
                "{}: no queue IRQs (MSI-X vectors named after queues) found; IRQ affinity not planned",
                nic.name
            ));
            continue;
        }
        for (k, irq) in nic.queue_irqs.iter().enumerate() {
            // A queue's rx and tx vectors (igb names them apart) share a CPU.
            let q = irq.queue.map_or(k, |q| q as usize);
            let cpu = cpus[q % cpus.len()];
            irq_cpus.insert(cpu);
            change(
                format!("{} IRQ {} ({}) affinity", nic.name, irq.number, irq.name),
                format!("proc/irq/{}/smp_affinity_list", irq.number),
                irq.affinity.to_list(),
                cpu.to_string(),
                match opts.profile {
                    Profile::Latency => WHY_IRQ_LATENCY,
                    Profile::Throughput => WHY_IRQ_THROUGHPUT,
                },
            );
        }
    }

    let entries = opts.connections.max(1).next_power_of_two().max(32_768);
    let rps = match opts.profile {
        Profile::Latency => usable.minus(&irq_cpus),
        Profile::Throughput => CpuSet::new(),
    };
    if opts.profile == Profile::Latency && rps.is_empty() {
        notes.push(format!(
            "RPS stays off: every usable CPU ({usable}) takes IRQs; reserve fewer CPUs for RPS to help"
        ));
    }
    for (nic, irqs) in nics.iter().zip(&irq_plan) {
        let nrx = nic.rx.len().max(1) as u32;
        for (q, (old, flows)) in nic.rx.iter().enumerate() {
            let dir = format!("sys/class/net/{}/queues/rx-{q}", nic.name);
            change(
                format!("{} rx-{q} RPS CPUs", nic.name),
                format!("{dir}/rps_cpus"),
                old.to_mask(ncpus),
                rps.to_mask(ncpus),
                if rps.is_empty() && opts.profile == Profile::Throughput {
                    WHY_RPS_OFF
                } else {
                    WHY_RPS
                },
            );
            let want = if rps.is_empty() { 0 } else { entries / nrx };
            change(
                format!("{} rx-{q} RFS flow count", nic.name),
                format!("{dir}/rps_flow_cnt"),
                flows.to_string(),
                want.to_string(),
                WHY_RFS_FLOWS,
            );
        }
        let xps = xps_plan(host, nic, irqs, opts.profile);
        for (q, old) in nic.tx.iter().enumerate() {
            let Some(old) = old else {
                notes.push(format!("{} tx-{q}: no xps_cpus (kernel without XPS)", nic.name));
                continue;
            };
            change(
                format!("{} tx-{q} XPS CPUs", nic.name),
                format!("sys/class/net/{}/queues/tx-{q}/xps_cpus", nic.name),
                old.to_mask(ncpus),
                xps[q].to_mask(ncpus),
                match opts.profile {
                    Profile::Latency => WHY_XPS,
                    Profile::Throughput => WHY_XPS_THROUGHPUT,
                },
            );
        }
    }

    // The global RFS table only when a NIC's queues are tuned to use it.
    let mut wanted: Vec<(&str, String, &'static str)> = Vec::new();
    if nics.iter().any(|n| !n.rx.is_empty()) {
        let table = if rps.is_empty() { 0 } else { entries };
        wanted.push(("proc/sys/net/core/rps_sock_flow_entries", table.to_string(), WHY_RFS_TABLE));
    }
    for (path, value, why) in sysctls(opts.profile) {
        // Limits are only raised: a host that allows more keeps it.
        let current = host.sysctls.get(path).and_then(|v| v.trim().parse::<u64>().ok());
        let target = value.parse::<u64>().ok();
        if RAISE_ONLY.contains(&path) && matches!((current, target), (Some(c), Some(t)) if c > t) {
            continue;
        }
        wanted.push((path, value.to_string(), why));
    }
    let migration =
        ["proc/sys/kernel/sched_migration_cost_ns", "sys/kernel/debug/sched/migration_cost_ns"]
            .into_iter()
            .find(|p| host.sysctls.contains_key(*p));
    match migration {
        Some(p) => wanted.push((p, MIGRATION_COST.to_string(), WHY_MIGRATION)),
        None => notes.push(
            "sched_migration_cost_ns: neither /proc/sys/kernel/sched_migration_cost_ns nor debugfs' sched/migration_cost_ns is here (mount debugfs to tune it)".into(),
        ),
    }
    for (path, new, why) in wanted {
        match host.sysctls.get(path) {
            Some(old) => change(
                path.replace('/', ".").trim_start_matches("proc.sys.").to_string(),
                path.to_string(),
                normalize(old),
                new,
                why,
            ),
            None => notes.push(format!("{path}: not in this kernel; not planned")),
        }
    }

    let (changes, unchanged) = writes.into_iter().partition(|c| c.old != c.new);
    Ok(Plan {
        profile: opts.profile,
        reserve: opts.reserve.clone(),
        nics: nics.iter().map(|n| n.name.clone()).collect(),
        irq_cpus,
        changes,
        unchanged,
        notes,
    })
}

/// Sysctl values compared as the kernel prints them, whitespace collapsed
/// (`ip_local_port_range` prints a tab).
fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The NIC's NUMA node first, then the others in order.
fn node_order(host: &Host, nic: &Nic) -> Vec<u32> {
    let mut nodes = host.nodes();
    if let Some(n) = nic.numa_node.filter(|n| nodes.contains(n)) {
        nodes.retain(|m| *m != n);
        nodes.insert(0, n);
    }
    nodes
}

/// The CPUs that use each transmit queue.
fn xps_plan(host: &Host, nic: &Nic, irq_cpus: &[u32], profile: Profile) -> Vec<CpuSet> {
    let ntx = nic.tx.len();
    let mut out = vec![CpuSet::new(); ntx];
    if ntx == 0 {
        return out;
    }
    match profile {
        Profile::Latency => {
            // Queue t belongs to node order[t % nodes]; a node's CPUs are
            // dealt among its queues.
            let order = node_order(host, nic);
            let mut by_node: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for t in 0..ntx {
                by_node.entry(order[t % order.len()]).or_default().push(t);
            }
            for (node, queues) in by_node {
                for (k, cpu) in host.node_cpus(node).iter().enumerate() {
                    out[queues[k % queues.len()]].insert(cpu);
                }
            }
        }
        Profile::Throughput => {
            for (t, set) in out.iter_mut().enumerate() {
                if let Some(c) = irq_cpus.get(t % irq_cpus.len().max(1)) {
                    *set = host.core_siblings(*c);
                }
            }
        }
    }
    out
}
