//! The CNI front end: environment + stdin in, result or error JSON out.

use std::io::{Read, Write};
use std::process::ExitCode;

use nearhost_cni::plugin::{handle, reply_version};
use nearhost_cni::{CniError, Invocation};

pub fn run() -> ExitCode {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(
            &CniError::new(
                nearhost_cni::code::IO_FAILURE,
                format!("reading the config from stdin: {e}"),
            ),
            &stdin,
        );
    }
    let inv = match Invocation::from_env(|k| std::env::var(k).ok()) {
        Ok(inv) => inv,
        Err(e) => return fail(&e, &stdin),
    };
    match handle(&inv, &stdin) {
        Ok(Some(out)) => {
            print_json(&out);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e, &stdin),
    }
}

fn fail(e: &CniError, stdin: &[u8]) -> ExitCode {
    tracing::error!("{}", e.msg);
    print_json(&e.to_json(reply_version(stdin)));
    ExitCode::FAILURE
}

fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
}
