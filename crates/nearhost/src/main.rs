//! `nearhost`: a CNI plugin when `CNI_COMMAND` is set, a netavark plugin when
//! called as one (`info`, `create`, `setup NETNS`, `teardown NETNS`),
//! otherwise the CLI.

mod attach_view;
mod cli;
mod cli_agent;
mod cli_attach;
mod cli_bpf;
mod cli_docs;
mod cli_doctor;
mod cli_install;
mod cli_ipam;
mod cli_lab;
mod cli_tune;
mod cni_entry;
mod logging;
mod netavark_entry;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Each mode sets up its logging (logging.rs) once it knows its settings:
    // the CNI plugin from its config on stdin, the CLI from its flags.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni_entry::run();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(call) = netavark_entry::detect(&args) {
        return netavark_entry::run(&call);
    }
    cli::run()
}
