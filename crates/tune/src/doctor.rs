//! `nearhost doctor`: what this host can do and what is in the way, from
//! facts the caller gathers (link kinds probed in a scratch namespace by the
//! binary; everything else read from `/proc` and `/sys` under a root, as
//! [`Host::read`] does). Pure from here: the facts become a report with a
//! ranked recommendation of datapaths and the changes `tune` would make.

use std::path::Path;

use serde::Serialize;

use crate::host::Host;
use crate::plan::Plan;

/// Whether the kernel can make a link of a kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum Support {
    /// Created in a scratch namespace.
    Yes,
    /// A module of this kernel, not loaded; not probed (probing would load
    /// it: `--load-modules`).
    Module,
    /// The kernel refused it (why).
    No(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub kind: String,
    pub support: Support,
}

/// The link kinds doctor probes, with their module names.
pub const KINDS: &[(&str, &str)] = &[
    ("veth", "veth"),
    ("bridge", "bridge"),
    ("macvlan", "macvlan"),
    ("ipvlan", "ipvlan"),
    ("vxlan", "vxlan"),
    ("bond", "bonding"),
    ("netkit", "netkit"),
    ("dummy", "dummy"),
];

/// Where a module is, for [`Support::Module`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Loaded, built in, or the kernel has no module support: probing
    /// loads nothing.
    Present,
    /// A loadable module, not loaded.
    Loadable,
    /// Not in this kernel's module list.
    Absent,
}

/// Where `module` stands under `root` for kernel `release`.
pub fn module_state(root: &Path, release: &str, module: &str) -> ModuleState {
    let modules = root.join("proc/modules");
    let Ok(loaded) = std::fs::read_to_string(&modules) else {
        return ModuleState::Present; // no module support: nothing can be loaded
    };
    if loaded.lines().any(|l| l.split_whitespace().next() == Some(module))
        || root.join("sys/module").join(module).exists()
    {
        return ModuleState::Present;
    }
    let dir = root.join("lib/modules").join(release);
    let file = format!("/{module}.ko");
    let listed = |name: &str| {
        std::fs::read_to_string(dir.join(name)).is_ok_and(|t| {
            t.lines().any(|l| {
                let path = l.split(':').next().unwrap_or("");
                path.ends_with(&file) || path.contains(&format!("{file}."))
            })
        })
    };
    if listed("modules.builtin") {
        ModuleState::Present
    } else if listed("modules.dep") {
        ModuleState::Loadable
    } else {
        ModuleState::Absent
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct NicFacts {
    pub name: String,
    pub driver: Option<String>,
    /// Mbit/s; `None` when down or unknown.
    pub speed: Option<u32>,
    pub mtu: Option<u32>,
    pub numa_node: Option<u32>,
    pub rx_queues: usize,
    pub tx_queues: usize,
    /// (IRQ, name, affinity list).
    pub irqs: Vec<(u32, String, String)>,
    /// (total, enabled) VFs, when SR-IOV capable.
    pub sriov: Option<(u32, u32)>,
    /// RPS on any queue.
    pub rps: bool,
    pub xps: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    pub datapath: String,
    pub why: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub cpus: usize,
    pub numa_nodes: usize,
    pub probes: Vec<Probe>,
    pub bpffs_mounted: bool,
    pub nics: Vec<NicFacts>,
    pub irqbalance_running: bool,
    pub conntrack_loaded: bool,
    /// `net.ipv4.conf.all.rp_filter`.
    pub rp_filter: Option<String>,
    /// What stands between this host and the lowest latency.
    pub in_the_way: Vec<String>,
    /// Best first.
    pub recommendations: Vec<Recommendation>,
    /// What `nearhost tune plan` (latency) would change.
    pub tuning: Vec<String>,
}

/// Exit codes a script can use.
pub const EXIT_OK: u8 = 0;
/// Something is in the way (listed in `in_the_way`).
pub const EXIT_IN_THE_WAY: u8 = 3;

impl Report {
    pub fn exit_code(&self) -> u8 {
        if self.in_the_way.is_empty() {
            EXIT_OK
        } else {
            EXIT_IN_THE_WAY
        }
    }

    /// Whether links of `kind` can be made here: probed, or a module of this
    /// kernel that making the first one loads.
    pub fn supports(&self, kind: &str) -> bool {
        self.probes
            .iter()
            .any(|p| p.kind == kind && matches!(p.support, Support::Yes | Support::Module))
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok().map(|s| s.trim().to_string())
}

/// Whether a process named `comm` runs (from `proc/N/comm`).
fn running(root: &Path, comm: &str) -> bool {
    std::fs::read_dir(root.join("proc")).is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())
                && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
        })
    })
}

/// The report for `host` (read under its root), the probes the caller made
/// and the latency plan.
pub fn report(host: &Host, probes: Vec<Probe>, plan: Option<&Plan>) -> Report {
    let root = host.root.as_path();
    let nics: Vec<NicFacts> = host
        .nics
        .iter()
        .map(|n| {
            let dir = format!("sys/class/net/{}", n.name);
            let num =
                |f: &str| read(root, &format!("{dir}/{f}")).and_then(|s| s.parse::<i64>().ok());
            let sriov = num("device/sriov_totalvfs")
                .filter(|t| *t > 0)
                .map(|t| (t as u32, num("device/sriov_numvfs").unwrap_or(0) as u32));
            NicFacts {
                name: n.name.clone(),
                driver: n.driver.clone(),
                speed: num("speed").filter(|s| *s > 0).map(|s| s as u32),
                mtu: num("mtu").map(|m| m as u32),
                numa_node: n.numa_node,
                rx_queues: n.rx.len(),
                tx_queues: n.tx.len(),
                irqs: n
                    .queue_irqs
                    .iter()
                    .map(|i| (i.number, i.name.clone(), i.affinity.to_list()))
                    .collect(),
                sriov,
                rps: n.rx.iter().any(|(m, _)| !m.is_empty()),
                xps: n.tx.iter().any(|m| m.as_ref().is_some_and(|m| !m.is_empty())),
            }
        })
        .collect();
    let irqbalance_running = running(root, "irqbalance");
    let conntrack_loaded = root.join("sys/module/nf_conntrack").exists();
    let rp_filter = read(root, "proc/sys/net/ipv4/conf/all/rp_filter");
    let bpffs_mounted = read(root, "proc/mounts")
        .is_some_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")));
    let mut r = Report {
        kernel: read(root, "proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        cpus: host.cpus.len(),
        numa_nodes: host.nodes().len(),
        probes,
        bpffs_mounted,
        nics,
        irqbalance_running,
        conntrack_loaded,
        rp_filter,
        in_the_way: Vec::new(),
        recommendations: Vec::new(),
        tuning: plan
            .map(|p| {
                p.changes.iter().map(|c| format!("{}: {} → {}", c.what, c.old, c.new)).collect()
            })
            .unwrap_or_default(),
    };
    r.in_the_way = in_the_way(&r);
    r.recommendations = recommend(&r);
    r
}

fn in_the_way(r: &Report) -> Vec<String> {
    let mut v = Vec::new();
    if !r.supports("macvlan") && !r.supports("ipvlan") {
        v.push("neither macvlan nor ipvlan can be created: only the veth datapaths (routed, bridge) are left, at 1.1-1.4x the host's latency".to_string());
    }
    if r.irqbalance_running {
        v.push("irqbalance runs: it moves IRQs every 10 s and would undo `nearhost tune`'s IRQ pins (ban the tuned CPUs with IRQBALANCE_BANNED_CPULIST or stop it)".to_string());
    }
    if r.conntrack_loaded {
        v.push("conntrack is loaded: every packet of every pod is looked up and tracked; NOTRACK rules for pod-to-pod traffic save that CPU (the study; Docker loads nf_conntrack even for macvlan)".to_string());
    }
    v
}

fn recommend(r: &Report) -> Vec<Recommendation> {
    let mut v = Vec::new();
    let rec = |d: &str, why: &str| Recommendation { datapath: d.to_string(), why: why.to_string() };
    let vfs = r.nics.iter().filter_map(|n| n.sriov.map(|s| (n, s))).collect::<Vec<_>>();
    if let Some((nic, (total, _))) = vfs.first() {
        v.push(rec("sriov", &format!("{} can give {total} VFs: the container gets a NIC function of its own, switched in hardware, with its own queues and IRQs", nic.name)));
    }
    if r.supports("macvlan") {
        v.push(rec("macvlan", "at the host's latency in nearhost demo (p50 within noise of the host); add hostReach for the host and Services"));
    }
    if r.supports("ipvlan") {
        v.push(rec("ipvlan", "as macvlan, one MAC for all containers: for switch ports and clouds that allow one MAC per port"));
    }
    if r.nics.len() > 1 {
        v.push(rec(
            "hostdev",
            "a spare NIC (or a cloud ENI) moved whole into one container: no sharing at all",
        ));
    }
    v.push(rec("routed", "veth with host routes: keeps the host stack (netfilter, kube-proxy) at ~1.1x the host's latency"));
    v.push(rec(
        "bridge",
        "veth on a bridge with NAT and port mappings: the Docker-style default, ~1.25x",
    ));
    if r.supports("vxlan") {
        v.push(rec("vxlan", "only where hosts share no L2 segment or routes cannot be programmed: encapsulation, ~1.2-1.4x"));
    }
    v
}
