//! Every `nearhost bench` example in docs/bench.md runs as written, except
//! that it points at this test's server and runs for 1 s instead of its
//! `--duration` (so the suite stays short).

use nearhost_testkit as support;

use std::time::Duration;

use support::bench::{run, start_server};

const DOC: &str = include_str!("../../../docs/bench.md");
const DOC_ADDR: &str = "127.0.0.1:7000";

/// The example command lines of the document's `sh` blocks.
fn examples() -> Vec<Vec<String>> {
    let mut in_sh = false;
    let mut out = Vec::new();
    for line in DOC.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && l.starts_with("nearhost bench ") => {
                out.push(l.split_whitespace().skip(1).map(str::to_string).collect());
            }
            _ => {}
        }
    }
    out
}

/// Replaces the value after `flag`, or appends the flag.
fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
}

#[test]
fn every_example_in_the_user_documentation_runs() {
    let examples = examples();
    assert!(examples.len() >= 15, "found only {} examples", examples.len());
    let (_server, addr) = start_server(None, "127.0.0.1:0", &[]);
    for mut args in examples {
        for a in args.iter_mut().filter(|a| *a == DOC_ADDR) {
            *a = addr.to_string();
        }
        if args[1] == "serve" {
            set_flag(&mut args, "--listen", "127.0.0.1:0");
        }
        set_flag(&mut args, "--duration", "1");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(None, &argv, Duration::from_secs(60));
        assert!(out.status.success(), "`nearhost {}` failed: {}", argv.join(" "), out.stderr);
    }
}
