//! What the plugin logs, and where: stderr without escape codes when it is a
//! pipe (every runtime reads it so), the config's `"logFile"` and
//! `"logLevel"`, the level from NEARHOST_LOG or RUST_LOG.

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::support::*;

fn conf(h: &Host, extra: Value) -> Value {
    let mut c = netconf("1.1.0", "logs", "macvlan", h.ipam_v4(), json!({"master": "eth0"}));
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn a_failing_call_through_a_pipe_logs_its_error_without_escape_codes() {
    let h = Host::new(130);
    let c = Netns::new("c");
    let bad = conf(&h, json!({"master": "nosuchnic0"}));
    let out = Call::new(&h.ns, "ADD", "pipe", &c.path(), "eth0").conf(&bad);
    out.expect_err(7, "nosuchnic0");
    assert!(out.stderr.contains("ERROR") && out.stderr.contains("nosuchnic0"), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "escape codes in a pipe: {:?}", out.stderr);
    // The level from the environment: RUST_LOG when NEARHOST_LOG is not set,
    // NEARHOST_LOG first when both are.
    let good = conf(&h, json!({}));
    let out = Call::new(&h.ns, "ADD", "env", &c.path(), "eth0").env("RUST_LOG", "info").conf(&good);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("INFO") && out.stderr.contains("ok"),
        "RUST_LOG=info: {:?}",
        out.stderr
    );
    let out = Call::new(&h.ns, "DEL", "env", &c.path(), "eth0")
        .env("RUST_LOG", "info")
        .env("NEARHOST_LOG", "error")
        .conf(&good);
    assert!(out.ok && out.stderr.is_empty(), "NEARHOST_LOG=error wins: {:?}", out.stderr);
    // A filter spelled wrong is said so, and the call goes on.
    let out = Call::new(&h.ns, "DEL", "env", &c.path(), "eth0")
        .env("NEARHOST_LOG", "nearhost=loud")
        .conf(&good);
    assert!(
        out.ok && out.stderr.contains("NEARHOST_LOG=\"nearhost=loud\" is not a log filter"),
        "{}",
        out.stderr
    );
}

#[test]
fn log_file_and_level_from_the_config() {
    let h = Host::new(131);
    let c = Netns::new("c");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nearhost.log");
    let logged = conf(&h, json!({"logFile": file}));
    let r = add(&h.ns, "logged", &c, &logged);
    let bad = conf(&h, json!({"logFile": file, "master": "nosuchnic0"}));
    Call::new(&h.ns, "ADD", "logged-bad", &Netns::new("c").path(), "eth0")
        .conf(&bad)
        .expect_err(7, "nosuchnic0");
    let text = std::fs::read_to_string(&file).expect("the log file was written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per call at the default level (info):\n{text}");
    assert!(
        lines[0].contains("INFO")
            && lines[0].contains("container=logged")
            && lines[0].contains("Add"),
        "{text}"
    );
    assert!(lines[1].contains("ERROR") && lines[1].contains("nosuchnic0"), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in the log file: {text:?}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // "logLevel" lowers it; the file is appended to.
    let quiet = conf(&h, json!({"logFile": file, "logLevel": "error", "prevResult": r}));
    let out = Call::new(&h.ns, "DEL", "logged", &c.path(), "eth0").conf(&quiet);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "logLevel error: nothing logged for a DEL that worked"
    );

    // A log file is never written through a symlink: the call works, and says so.
    let target = dir.path().join("target");
    std::fs::write(&target, "untouched\n").unwrap();
    let link = dir.path().join("link.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let c2 = Netns::new("c");
    let out = Call::new(&h.ns, "ADD", "linked", &c2.path(), "eth0")
        .conf(&conf(&h, json!({"logFile": link})));
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("link.log") && out.stderr.contains("logging to stderr only"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    del(&h.ns, "linked", &c2.path(), &conf(&h, json!({})), Some(&out.json));

    // Bad settings: code 7 naming the field and value; nothing is attached.
    let before = h.reservations("logs").len();
    for (extra, says) in [
        (json!({"logFile": "relative.log"}), "logFile: \"relative.log\" is not an absolute path"),
        (json!({"logFile": 7}), "logFile: expected a string, got 7"),
        (
            json!({"logLevel": "chatty"}),
            "logLevel: \"chatty\" is not one of off, error, warn, info, debug, trace",
        ),
    ] {
        let c3 = Netns::new("c");
        let links = c3.link_names();
        Call::new(&h.ns, "ADD", "badlog", &c3.path(), "eth0")
            .conf(&conf(&h, extra))
            .expect_err(7, says);
        assert_eq!(c3.link_names(), links, "{says}: a link was made");
    }
    assert_eq!(h.reservations("logs").len(), before, "an address was reserved for a refused call");
    assert!(!h.ns.exec(&["test", "-e", "relative.log"]).status.success());
}
