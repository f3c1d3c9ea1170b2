//! `nearhost doctor`: what this host can do for low-latency container
//! networking and what is in the way. Link kinds are probed by creating them
//! in a scratch network namespace that vanishes with its thread (the host's
//! namespace is never touched); a kind whose module is not loaded is not
//! probed unless `--load-modules` says loading it is fine. The rest is read
//! from /proc and /sys (nearhost_tune::doctor).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nearhost_kernel::link::{BondMode, IpvlanMode, MacvlanMode, NewLink, NewLinkKind};
use nearhost_tune::doctor::{self, ModuleState, Probe, Report, Support};
use nearhost_tune::{Host, Options, Profile};

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Probe link kinds whose module is not loaded (creating one loads it).
    #[arg(long)]
    load_modules: bool,
    /// The CNI network configs whose parent NICs tuning would cover.
    #[arg(long, default_value = "/etc/cni/net.d")]
    net_dir: PathBuf,
    /// The root whose proc/ and sys/ are read (tests).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

pub fn run(a: DoctorArgs) -> ExitCode {
    match report(&a) {
        Ok(r) => {
            if a.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("nearhost doctor: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print(&r);
            }
            ExitCode::from(r.exit_code())
        }
        Err(e) => {
            eprintln!("nearhost doctor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(a: &DoctorArgs) -> anyhow::Result<Report> {
    let host = Host::read(&a.root)?;
    let release = std::fs::read_to_string(a.root.join("proc/sys/kernel/osrelease"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let probes = doctor::KINDS
        .iter()
        .map(|(kind, module)| {
            let support = match doctor::module_state(&a.root, &release, module) {
                ModuleState::Loadable if !a.load_modules => Support::Module,
                ModuleState::Absent => Support::No(format!("no {module} module in this kernel")),
                _ => probe(kind),
            };
            Probe { kind: kind.to_string(), support }
        })
        .collect();
    let nics = crate::cli_tune::network_parents(&a.net_dir, &host);
    let opts = Options { nics, ..Options::new(Profile::Latency) };
    let plan = nearhost_tune::plan(&host, &opts).ok();
    Ok(doctor::report(&host, probes, plan.as_ref()))
}

/// Doctor's summary and the tuning state of this machine, for the demo
/// report's header (probing as `nearhost doctor` does, loading no module).
pub fn demo_summary() -> anyhow::Result<nearhost_lab::report::HostSummary> {
    let args = DoctorArgs {
        json: false,
        load_modules: false,
        net_dir: PathBuf::from("/etc/cni/net.d"),
        root: PathBuf::from("/"),
    };
    let r = report(&args)?;
    let root = std::path::Path::new("/");
    let tuning = match nearhost_tune::status(
        root,
        std::path::Path::new(nearhost_tune::apply::DEFAULT_STATE),
    ) {
        Ok((saved, _)) if saved.writes.is_empty() => "not tuned by nearhost".to_string(),
        Ok((saved, now)) => format!(
            "tuned by nearhost (profile {}): {} values, {} changed since",
            saved.profile.map_or("?".into(), |p| p.to_string()),
            now.len(),
            now.iter().filter(|s| !s.holds).count()
        ),
        Err(e) => format!("unknown: {e}"),
    };
    Ok(nearhost_lab::report::HostSummary {
        cpus: r.cpus,
        numa_nodes: r.numa_nodes,
        links: r
            .probes
            .iter()
            .map(|p| {
                let s = match &p.support {
                    Support::Yes => "yes".to_string(),
                    Support::Module => "module (not loaded)".to_string(),
                    Support::No(why) => format!("no: {why}"),
                };
                (p.kind.clone(), s)
            })
            .collect(),
        bpffs_mounted: r.bpffs_mounted,
        irqbalance_running: r.irqbalance_running,
        conntrack_loaded: r.conntrack_loaded,
        rp_filter: r.rp_filter.clone(),
        in_the_way: r.in_the_way.clone(),
        tuning,
    })
}

/// The sysctls `tune` sets, dotted (`net.ipv4.tcp_tw_reuse`): the demo reads
/// them in each lab host's namespace.
pub fn tune_sysctls() -> Vec<String> {
    nearhost_tune::plan::SYSCTL_PATHS
        .iter()
        .filter_map(|p| p.strip_prefix("proc/sys/"))
        .map(|p| p.replace('/', "."))
        .collect()
}

/// Creates a link of `kind` in a scratch namespace (macvlan and ipvlan on a
/// veth made there first).
fn probe(kind: &str) -> Support {
    let made = nearhost_kernel::netns::run_in_scratch(|| -> nearhost_kernel::Result<()> {
        let mut nl = nearhost_kernel::Netlink::open()?;
        let mut add = |name: &str, kind: NewLinkKind<'static>| {
            nl.create_link(&NewLink { name: name.into(), kind, netns: None, mtu: None, mac: None })
        };
        let parent = |nl: &mut nearhost_kernel::Netlink| -> nearhost_kernel::Result<u32> {
            Ok(nl.require_link("p0")?.index)
        };
        match kind {
            "veth" => add(
                "p0",
                NewLinkKind::Veth { peer_name: "p1".into(), peer_netns: None, peer_mac: None },
            ),
            "bridge" => add("b0", NewLinkKind::Bridge),
            "vxlan" => add(
                "x0",
                NewLinkKind::Vxlan {
                    vni: 1,
                    local: None,
                    port: 4789,
                    underlay: None,
                    learning: false,
                },
            ),
            "bond" => add(
                "b0",
                NewLinkKind::Bond {
                    mode: BondMode::ActiveBackup,
                    miimon: 100,
                    fail_over_mac_active: false,
                },
            ),
            "netkit" => add("n0", NewLinkKind::Netkit { peer_name: "n1".into(), peer_netns: None }),
            "dummy" => add("d0", NewLinkKind::Dummy),
            "macvlan" | "ipvlan" => {
                add(
                    "p0",
                    NewLinkKind::Veth { peer_name: "p1".into(), peer_netns: None, peer_mac: None },
                )?;
                let index = parent(&mut nl)?;
                let kind = if kind == "macvlan" {
                    NewLinkKind::Macvlan { parent: index, mode: MacvlanMode::Bridge }
                } else {
                    NewLinkKind::Ipvlan { parent: index, mode: IpvlanMode::L2 }
                };
                nl.create_link(&NewLink {
                    name: "v0".into(),
                    kind,
                    netns: None,
                    mtu: None,
                    mac: None,
                })
            }
            other => unreachable!("no probe for {other}"),
        }
    });
    match made {
        Ok(Ok(())) => Support::Yes,
        Ok(Err(e)) => Support::No(e.to_string()),
        Err(e) => Support::No(format!("no scratch namespace: {e}")),
    }
}

fn print(r: &Report) {
    println!("kernel {}, {} CPUs in {} NUMA node(s)", r.kernel, r.cpus, r.numa_nodes);
    println!("\nlink kinds (probed in a scratch namespace):");
    for p in &r.probes {
        let s = match &p.support {
            Support::Yes => "yes".to_string(),
            Support::Module => "a module, not loaded (not probed; --load-modules)".to_string(),
            Support::No(why) => format!("no ({why})"),
        };
        println!("  {:<8} {s}", p.kind);
    }
    println!("  bpffs    {}", if r.bpffs_mounted { "mounted" } else { "not mounted" });
    println!("\nNICs:");
    if r.nics.is_empty() {
        println!("  none with a device (virtual interfaces only)");
    }
    for n in &r.nics {
        println!(
            "  {} driver {}, {}, MTU {}, NUMA node {}, {} rx / {} tx queues, RPS {}, XPS {}{}",
            n.name,
            n.driver.as_deref().unwrap_or("?"),
            n.speed.map_or("speed unknown".into(), |s| format!("{s} Mbit/s")),
            n.mtu.map_or("?".into(), |m| m.to_string()),
            n.numa_node.map_or("none".into(), |m| m.to_string()),
            n.rx_queues,
            n.tx_queues,
            if n.rps { "on" } else { "off" },
            if n.xps { "on" } else { "off" },
            n.sriov.map_or(String::new(), |(t, e)| format!(", SR-IOV {e}/{t} VFs")),
        );
        for (irq, name, cpus) in &n.irqs {
            println!("    IRQ {irq} {name} on CPUs {cpus}");
        }
    }
    println!(
        "\nirqbalance {}; conntrack {}; rp_filter (all) {}",
        if r.irqbalance_running { "running" } else { "not running" },
        if r.conntrack_loaded { "loaded" } else { "not loaded" },
        r.rp_filter.as_deref().unwrap_or("?")
    );
    println!("\nin the way:");
    if r.in_the_way.is_empty() {
        println!("  nothing");
    }
    for w in &r.in_the_way {
        println!("  - {w}");
    }
    println!("\ndatapaths for this host, best first:");
    for (i, rec) in r.recommendations.iter().enumerate() {
        println!("  {}. {:<8} {}", i + 1, rec.datapath, rec.why);
    }
    println!("\n`nearhost tune plan` (latency) would change {} setting(s):", r.tuning.len());
    for t in &r.tuning {
        println!("  {t}");
    }
}
