//! The CNI front end: environment + stdin in, result or error JSON out.

use std::io::{Read, Write};
use std::process::ExitCode;

use nearhost_cni::plugin::{handle, reply_version};
use nearhost_cni::{CniError, Invocation};

use crate::logging::{CniLogging, Format};

pub fn run() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Logging as the config asks ("logFile", "logLevel"); a bad setting is the
    // call's error, reported before anything else is done.
    let logging = CniLogging::from_config(&stdin);
    let settings = logging.as_ref().ok();
    crate::logging::init(
        Format::Text,
        if settings.is_some_and(|s| s.file.is_some()) { "info" } else { "warn" },
        settings.and_then(|s| s.level.as_deref()),
        settings.and_then(|s| s.file.as_deref()),
    );
    if let Err(e) = read {
        return fail(
            &CniError::new(
                nearhost_cni::code::IO_FAILURE,
                format!("reading the config from stdin: {e}"),
            ),
            &stdin,
        );
    }
    if let Err((field, why)) = logging {
        return fail(&CniError::config(&field, why), &stdin);
    }
    let inv = match Invocation::from_env(|k| std::env::var(k).ok()) {
        Ok(inv) => inv,
        Err(e) => return fail(&e, &stdin),
    };
    let span = tracing::info_span!(
        "cni",
        command = ?inv.command,
        container = %inv.container_id,
        ifname = %inv.ifname
    );
    let _entered = span.enter();
    match handle(&inv, &stdin) {
        Ok(out) => {
            tracing::info!("ok");
            if let Some(out) = out {
                print_json(&out);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, &stdin),
    }
}

fn fail(e: &CniError, stdin: &[u8]) -> ExitCode {
    tracing::error!(code = e.code, "{}", e.msg);
    print_json(&e.to_json(reply_version(stdin)));
    ExitCode::FAILURE
}

fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
}
