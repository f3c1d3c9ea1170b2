//! `nearhost lab`, and the demo's life cycle (refusal, signals), end to end
//! through the compiled binary. One lab per machine: the tests take turns.

use nearhost_testkit as support;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::lab::*;
use support::*;

static ONE_LAB: Mutex<()> = Mutex::new(());

#[test]
fn lab_up_status_down_and_a_second_demo_is_refused() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _clean = CleanLab;
    let up = nearhost(&["lab", "up", "--datapaths", "macvlan,routed", "--json"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let state: Value = serde_json::from_slice(&up.stdout).unwrap();
    let names = lab_namespaces();
    for ns in ["nhlab-tor", "nhlab-h1", "nhlab-h2", "nhlab-h1-macvlan", "nhlab-h2-routed"] {
        assert!(names.iter().any(|n| n == ns), "{ns} missing: {names:?}");
    }
    // The lab is usable by hand: the bench client reaches the routed server.
    let routed =
        state["datapaths"].as_array().unwrap().iter().find(|d| d["datapath"] == "routed").unwrap();
    let target = routed["target"].as_str().unwrap();
    let rr = run(
        "ip",
        &[
            "netns",
            "exec",
            "nhlab-h1-routed",
            bin(),
            "bench",
            "rr",
            "--target",
            target,
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--json",
        ],
    );
    assert!(rr.status.success(), "{}", String::from_utf8_lossy(&rr.stderr));

    let status = nearhost(&["lab", "status", "--json"]);
    let st: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(st["namespaces"].as_array().unwrap().iter().all(|n| n["present"] == true));

    let second = nearhost(&["demo", "--quick"]);
    assert!(!second.status.success());
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(msg.contains("a lab is already up") && msg.contains("nearhost lab down"), "{msg}");
    assert_eq!(lab_namespaces().len(), names.len(), "the refused demo must not touch the lab");

    let down = nearhost(&["lab", "down"]);
    assert!(down.status.success());
    assert!(lab_namespaces().is_empty());
    assert!(
        eventually(Duration::from_secs(3), || lab_processes().is_empty()),
        "servers left: {:?}",
        lab_processes()
    );
    assert_eq!(
        String::from_utf8_lossy(&nearhost(&["lab", "status"]).stdout).trim(),
        "no lab is up"
    );
}

#[test]
fn ctrl_c_and_sigterm_leave_nothing_behind() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _clean = CleanLab;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let out_dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .args([
                "demo",
                "--quick",
                "--datapaths",
                "macvlan",
                "--out",
                out_dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until measuring has begun (servers are up), then interrupt.
        assert!(
            eventually(Duration::from_secs(120), || lab_processes().len() >= 3),
            "the demo never started measuring"
        );
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let waited = Instant::now();
        let status = child.wait().unwrap();
        assert!(!status.success(), "an interrupted demo must not report success");
        assert!(waited.elapsed() < Duration::from_secs(20), "took {:?} to stop", waited.elapsed());
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(err.contains("interrupted"), "{err}");
        assert!(
            lab_namespaces().is_empty(),
            "signal {signal}: namespaces left: {:?}",
            lab_namespaces()
        );
        assert!(
            eventually(Duration::from_secs(3), || lab_processes().is_empty()),
            "signal {signal}: processes left: {:?}",
            lab_processes()
        );
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_is_built() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let out = nearhost(&["demo", "--datapaths", "host,warp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--datapaths: unknown datapath \"warp\""));
    let out = nearhost(&["demo", "--duration", "1000"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
    // Workloads and their sizes: each refusal names the flag and the value.
    for (args, says) in [
        (&["--workload", "rr,warp"][..], "--workload: unknown workload \"warp\""),
        (&["--workload", "udp", "--udp-sizes", "64,0"], "--udp-sizes: 0"),
        (&["--workload", "stream", "--windows", "0"], "--windows: 0"),
        (&["--workload", "stream", "--windows", "huge"], "--windows: \"huge\""),
        (&["--workload", "pps", "--streams", "0"], "--streams: 0"),
        (&["--workload", "udp", "--udp-rate", "0"], "--udp-rate: 0"),
    ] {
        let out = nearhost(&[&["demo", "--quick"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("client runs"), "{args:?}: refused before the estimate: {err}");
    }
    assert!(lab_namespaces().is_empty());
    assert!(!std::path::Path::new("/run/nearhost-lab/state.json").exists(), "no lab was claimed");
}

/// On a kernel with ipvlan the demo measures it (here: the kernel lab).
#[test]
#[ignore = "needs ipvlan: runs in the kernel lab (scripts/kernel-lab)"]
fn demo_measures_ipvlan_where_the_kernel_has_it() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _clean = CleanLab;
    let out_dir = tempfile::tempdir().unwrap();
    let out = nearhost(&[
        "demo",
        "--datapaths",
        "ipvlan",
        "--rounds",
        "1",
        "--duration",
        "0.3",
        "--json",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ipvlan =
        report["datapaths"].as_array().unwrap().iter().find(|d| d["datapath"] == "ipvlan").unwrap();
    assert_eq!(ipvlan["available"], true, "{ipvlan}");
    let rr = &report["measurements"][0]["results"];
    let r =
        rr.as_array().unwrap().iter().find(|r| r["datapath"] == "ipvlan").expect("ipvlan measured");
    assert!(r["median"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(lab_namespaces().is_empty());
}
