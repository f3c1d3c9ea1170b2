//! `nearhost tune` for real on the guest's igb NIC: its MSI-X queue IRQs,
//! its queues' RPS/XPS/RFS files and the guest's sysctls. Applied, read back
//! from /proc and /sys, applied again (no change), reverted: every file the
//! plan touched reads back byte for byte as before. Only in the kernel lab's
//! guest: never on a host's own NIC.

use std::process::Command;

use serde_json::Value;

use crate::support::nics::Nics;
use crate::support::*;

fn tune(args: &[&str]) -> std::process::Output {
    Command::new(bin()).arg("tune").args(args).output().expect("run nearhost tune")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = tune(args);
    assert!(o.status.success(), "tune {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn tune_applies_and_reverts_on_an_igb_nics_queues_and_msix_irqs() {
    let n = Nics::take();
    let state = n.data.path().join("tune.json");
    let state = state.to_str().unwrap();
    let common = ["--nic", n.nic.as_str(), "--net-dir", "/nonexistent", "--state", state];
    let plan: Value =
        serde_json::from_str(&ok(&[&["plan", "--json"][..], &common[..]].concat())).unwrap();
    let changes: Vec<&Value> = plan["changes"].as_array().unwrap().iter().collect();
    let all: Vec<&Value> =
        changes.iter().copied().chain(plan["unchanged"].as_array().unwrap()).collect();
    let path = |c: &Value| format!("/{}", c["path"].as_str().unwrap());
    // igb names its queue vectors NIC-TxRx-N, or NIC-rx-N and NIC-tx-N
    // when it gives a queue's directions vectors of their own; the plan pins
    // each of them, a queue's vectors on one CPU.
    let irqs: Vec<&&Value> = all.iter().filter(|c| path(c).starts_with("/proc/irq/")).collect();
    assert!(!irqs.is_empty(), "no queue IRQ of {} planned: {plan}", n.nic);
    for c in &irqs {
        let what = c["what"].as_str().unwrap();
        assert!(
            ["TxRx", "rx", "tx"].iter().any(|k| what.contains(&format!("({}-{k}-", n.nic))),
            "{c}"
        );
    }
    assert!(all.iter().any(|c| path(c).ends_with("rx-0/rps_cpus")), "{plan}");
    assert!(all.iter().any(|c| path(c).ends_with("tx-0/xps_cpus")), "{plan}");
    assert!(!changes.is_empty(), "a fresh guest is not tuned yet: {plan}");

    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let before: Vec<(String, Vec<u8>)> = all.iter().map(|c| (path(c), read(&path(c)))).collect();

    let out = ok(&[&["apply", "--host-is-mine"][..], &common[..]].concat());
    assert!(out.contains(&format!("{} changes made", changes.len())), "{out}");
    for c in &all {
        let now = String::from_utf8(read(&path(c))).unwrap();
        let want = c["new"].as_str().unwrap();
        assert!(
            nearhost_tune::apply::same(&path(c), now.trim(), want),
            "{}: {now:?} after apply, planned {want}",
            path(c)
        );
    }
    let again = ok(&[&["apply", "--host-is-mine"][..], &common[..]].concat());
    assert!(again.contains("0 changes made"), "a second apply changes nothing: {again}");
    let status: Value = serde_json::from_str(&ok(&["status", "--json", "--state", state])).unwrap();
    assert_eq!(status["applied"], true);
    assert_eq!(status["changed_since"], 0);

    ok(&["revert", "--host-is-mine", "--state", state]);
    for (p, old) in &before {
        assert_eq!(
            String::from_utf8_lossy(&read(p)),
            String::from_utf8_lossy(old),
            "{p} is not restored byte for byte"
        );
    }
    assert!(!std::path::Path::new(state).exists());
}
