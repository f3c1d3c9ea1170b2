//! `nearhost`: a CNI plugin when `CNI_COMMAND` is set, otherwise the CLI.

mod attach_view;
mod cli;
mod cli_agent;
mod cli_attach;
mod cli_docs;
mod cli_ipam;
mod cli_lab;
mod cni_entry;

use std::process::ExitCode;

fn main() -> ExitCode {
    init_logging();
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni_entry::run();
    }
    cli::run()
}

/// Logs go to stderr only (stdout carries the CNI result), coloured only on a
/// terminal; `NEARHOST_LOG` sets the filter (e.g. `debug`), default `warn`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEARHOST_LOG")
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour escapes in a runtime's log or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
