//! The command line for humans (and scripts, with `--json`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The version and the commit the binary was built from (build.rs).
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("NEARHOST_COMMIT"), ")");

/// The clap definition of the whole command line (man pages, completions).
pub fn command() -> clap::Command {
    Cli::command()
}

#[derive(Parser)]
#[command(name = "nearhost", version = VERSION, propagate_version = true, about = "Low-latency networking for containers", long_about = None,
    after_long_help = "The same binary is also a CNI plugin (when CNI_COMMAND is set: put it in the runtime's CNI bin dir, or run `nearhost install-cni`) and a netavark plugin for Podman 5 (as /usr/libexec/netavark/nearhost: `podman network create -d nearhost -o datapath=macvlan -o master=eth0 --subnet …`).")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// How log lines on stderr look: text, or one JSON object per line. The
    /// level comes from NEARHOST_LOG, else RUST_LOG (e.g. `debug`); the
    /// default is `info` for the agent, `warn` for everything else.
    #[arg(long, global = true, value_enum, env = "NEARHOST_LOG_FORMAT", default_value_t)]
    log_format: crate::logging::Format,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the CNI spec versions this plugin speaks.
    Version,
    /// Measure latency and throughput (serve, rr, rate, udp, stream).
    Bench(nearhost_bench::cli::BenchArgs),
    /// Compare every datapath's latency with the host's, in a lab on this machine.
    Demo(crate::cli_lab::DemoArgs),
    /// A multi-host lab of network namespaces (up, down, status).
    #[command(subcommand)]
    Lab(crate::cli_lab::LabCmd),
    /// The node agent: etcd-backed address blocks, routes to other nodes, metrics.
    #[command(args_conflicts_with_subcommands = true)]
    Agent {
        #[command(flatten)]
        args: Box<crate::cli_agent::AgentArgs>,
        #[command(subcommand)]
        sub: Option<crate::cli_agent::AgentCmd>,
    },
    /// Cluster address pools in etcd (create, ls, rm).
    #[command(subcommand)]
    Pool(crate::cli_agent::PoolCmd),
    /// The embedded IPAM's state files (check, repair).
    #[command(subcommand)]
    Ipam(crate::cli_ipam::IpamCmd),
    /// Install the plugin into the runtime's CNI bin dirs and a network list into its conf dir.
    InstallCni(crate::cli_install::InstallCniArgs),
    /// Write the man pages (nearhost.1, nearhost-SUBCOMMAND.1, …) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Print the shell completion script for bash, zsh or fish.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// What this host can do (datapaths, NICs, IRQs) and what is in the way; exit 3 if something is.
    Doctor(crate::cli_doctor::DoctorArgs),
    /// Host tuning for latency: IRQ affinity, RPS/XPS/RFS, sysctls (plan, apply, revert, status).
    #[command(subcommand)]
    Tune(crate::cli_tune::TuneCmd),
    /// BPF host routing: the pinned programs and maps, counters, attachments.
    #[command(subcommand)]
    Bpf(crate::cli_bpf::BpfCmd),
    #[command(flatten)]
    Attach(Box<crate::cli_attach::AttachCmd>),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Cmd::Agent { .. }) { "info" } else { "warn" };
    crate::logging::init(cli.log_format, default_level, None, None);
    let result: anyhow::Result<()> = match cli.command {
        Cmd::Bench(args) => {
            return match nearhost_bench::cli::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(nearhost_bench::cli::exit_code(&e))
                }
            }
        }
        Cmd::Demo(a) => crate::cli_lab::demo(a),
        Cmd::Agent { args, sub } => crate::cli_agent::agent(*args, sub),
        Cmd::Pool(c) => crate::cli_agent::pool(c),
        Cmd::Ipam(c) => crate::cli_ipam::run(c),
        Cmd::Lab(c) => crate::cli_lab::lab(c),
        Cmd::InstallCni(a) => crate::cli_install::run(a),
        Cmd::Version => {
            println!(
                "nearhost {VERSION} (CNI {})",
                nearhost_cni::version::SpecVersion::supported_list().join(", ")
            );
            Ok(())
        }
        Cmd::Man { dir } => crate::cli_docs::man(&dir).map(|files| {
            for f in files {
                println!("{f}");
            }
        }),
        Cmd::Completions { shell } => {
            crate::cli_docs::completions(shell);
            Ok(())
        }
        Cmd::Tune(c) => crate::cli_tune::run(c),
        Cmd::Doctor(a) => return crate::cli_doctor::run(a),
        Cmd::Bpf(c) => crate::cli_bpf::run(c),
        Cmd::Attach(cmd) => crate::cli_attach::run(*cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nearhost: {e:#}");
            ExitCode::FAILURE
        }
    }
}
