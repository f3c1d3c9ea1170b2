//! nearhost command line. Stub for the `bench` branch: the full front end
//! replaces this file; it only forwards `nearhost bench …`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nearhost", version, about = "Low-latency container networking")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure latency and throughput (serve, rr, rate, udp, stream).
    Bench(nearhost_bench::cli::BenchArgs),
}

fn main() -> ExitCode {
    let Command::Bench(args) = Cli::parse().command;
    match nearhost_bench::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(nearhost_bench::cli::exit_code(&e))
        }
    }
}
