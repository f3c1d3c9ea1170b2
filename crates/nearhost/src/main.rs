//! `nearhost`: a CNI plugin when `CNI_COMMAND` is set, otherwise the CLI.

mod attach_view;
mod cli;
mod cli_agent;
mod cli_attach;
mod cli_docs;
mod cli_install;
mod cli_ipam;
mod cli_lab;
mod cni_entry;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Each mode sets up its logging (logging.rs) once it knows its settings:
    // the CNI plugin from its config on stdin, the CLI from its flags.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni_entry::run();
    }
    cli::run()
}
