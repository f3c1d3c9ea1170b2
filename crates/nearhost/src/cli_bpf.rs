//! `nearhost bpf status`: what BPF host routing has in this host's network
//! namespace: the pinned set, its counters (how many packets took the fast
//! path and why others did not), the pods and pod blocks in its maps, and
//! every device with a tcx ingress program.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use nearhost_datapath::Namespace;

#[derive(Subcommand)]
pub enum BpfCmd {
    /// The pinned programs and maps of this host namespace, their counters and attachments.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// The pin root the networks use (their `bpf.pinPath`).
    #[arg(long, default_value = nearhost_kernel::bpf::DEFAULT_PIN_ROOT)]
    pin_path: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BpfCmd) -> anyhow::Result<()> {
    let BpfCmd::Status(a) = cmd;
    let mut host = Namespace::current().context("open the host namespace")?;
    let st = nearhost_datapath::bpf_status(&mut host, &a.pin_path)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    if !st.loaded {
        println!("BPF host routing: not loaded here ({} does not exist)", st.dir.display());
    } else {
        println!("BPF host routing: {}", st.dir.display());
        let s = &st.stats;
        println!(
            "  fast path   pod → pod {:>12}   uplink → pod {:>12}   pod → other host {:>12}",
            s.from_pod_to_pod, s.from_uplink_to_pod, s.from_pod_to_remote
        );
        println!(
            "  host stack  not a pod {:>12}   NAT reply    {:>12}   other {:>12}",
            s.stack_not_a_pod, s.stack_nat_flow, s.stack_other
        );
        println!("  pods ({}):", st.pods.len());
        for (ip, dev) in &st.pods {
            println!("    {ip:<40} {dev}");
        }
        let blocks: Vec<String> = st.blocks.iter().map(ToString::to_string).collect();
        println!(
            "  pod blocks: {}",
            if blocks.is_empty() { "-".into() } else { blocks.join(", ") }
        );
    }
    println!("  tcx ingress:");
    if st.attached.is_empty() {
        println!("    (nothing attached)");
    }
    for (dev, progs) in &st.attached {
        println!("    {dev:<16} {}", progs.join(", "));
    }
    Ok(())
}
