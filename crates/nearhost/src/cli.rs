//! The command line for humans (and scripts, with `--json`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nearhost", version, about = "Low-latency networking for containers", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the CNI spec versions this plugin speaks.
    Version,
    #[command(flatten)]
    Attach(Box<crate::cli_attach::AttachCmd>),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Cmd::Version => {
            println!("nearhost {} (CNI {})", env!("CARGO_PKG_VERSION"), nearhost_cni::version::SpecVersion::supported_list().join(", "));
            Ok(())
        }
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

