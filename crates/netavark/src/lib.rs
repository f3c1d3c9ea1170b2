//! nearhost as a netavark plugin (Podman 5's network backend). Netavark runs
//! the binary in its plugin directory under the name a user gives
//! `podman network create -d nearhost`, as `nearhost info|create|setup
//! NETNS|teardown NETNS`, with JSON on stdin and stdout:
//!
//! - [`types`]: what netavark sends and reads back;
//! - [`options`]: the network's `-o` options, typed and checked per datapath;
//! - [`plugin`]: the four calls, over the CNI plugin's own code.
//!
//! [`call`] is the whole protocol; the binary only does the I/O.

pub mod options;
pub mod plugin;
pub mod types;

use serde_json::{json, Value};

/// The subcommands netavark (and Podman, for `create`) run.
pub const SUBCOMMANDS: &[&str] = &["info", "create", "setup", "teardown"];

/// One call: `args` are the arguments after the program name. Returns what
/// to print on stdout (nothing for a successful teardown) and whether it
/// succeeded; a failure prints `{"error": "..."}` (only that key: Podman
/// refuses anything else) and must exit non-zero.
pub fn call(args: &[String], stdin: &[u8]) -> (Option<Value>, bool) {
    let sub = args.first().map(String::as_str).unwrap_or("info");
    let netns = || {
        args.get(1).map(String::as_str).filter(|s| !s.is_empty()).ok_or_else(|| {
            nearhost_cni::CniError::new(
                nearhost_cni::code::INVALID_ENV,
                format!("{sub}: the container's network namespace path argument is missing"),
            )
        })
    };
    let out = match sub {
        "info" => Ok(Some(plugin::info())),
        "create" => plugin::create(stdin).map(Some),
        "setup" => netns()
            .and_then(|ns| plugin::setup(ns, stdin))
            .map(|s| Some(serde_json::to_value(s).expect("the status block serializes"))),
        "teardown" => netns().and_then(|ns| plugin::teardown(ns, stdin)).map(|()| None),
        other => Err(nearhost_cni::CniError::new(
            nearhost_cni::code::INVALID_ENV,
            format!("unknown netavark plugin call {other:?} (expected {})", SUBCOMMANDS.join(", ")),
        )),
    };
    match out {
        Ok(v) => (v, true),
        Err(e) => {
            tracing::error!(code = e.code, "{sub}: {}", e.msg);
            (Some(json!({"error": format!("nearhost: {}", e.msg)})), false)
        }
    }
}
