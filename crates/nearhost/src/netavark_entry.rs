//! The netavark plugin front end (Podman 5): `nearhost info|create|setup
//! NETNS|teardown NETNS`, JSON on stdin and stdout (`nearhost_netavark::call`).

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use crate::logging::Format;

/// The arguments after the program name, when they are a netavark plugin call.
pub fn detect(args: &[OsString]) -> Option<Vec<String>> {
    let first = args.get(1)?.to_str()?;
    if !nearhost_netavark::SUBCOMMANDS.contains(&first) {
        return None;
    }
    args[1..].iter().map(|a| a.to_str().map(String::from)).collect()
}

pub fn run(args: &[String]) -> ExitCode {
    // Netavark passes a plugin's stderr to the user's terminal on every
    // `podman run` and `stop`: quiet unless NEARHOST_LOG asks (errors are in
    // the JSON reply, which Podman shows).
    crate::logging::init(Format::Text, "off", None, None);
    let sub = args[0].as_str();
    let mut stdin = Vec::new();
    if sub != "info" {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "nearhost {sub}: this is netavark's plugin interface (Podman 5), which reads JSON on stdin; \
                 create networks with `podman network create -d nearhost -o datapath=…` (see `nearhost --help`)"
            );
            return ExitCode::from(2);
        }
        if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
            return reply(
                &serde_json::json!({"error": format!("nearhost: reading stdin: {e}")}),
                false,
            );
        }
    }
    match nearhost_netavark::call(args, &stdin) {
        (Some(out), ok) => reply(&out, ok),
        (None, ok) => exit(ok),
    }
}

fn reply(v: &serde_json::Value, ok: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    exit(ok)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
