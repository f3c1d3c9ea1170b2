//! `nearhost install-cni`: the plugin into a runtime's bin dirs and a checked
//! network list into its conf dir, atomically, safe to rerun.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use nearhost_testkit::bin;
use serde_json::{json, Value};

fn install(args: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("install-cni");
    for (flag, path) in ["--bin-dir", "--bin-dir", "--conf-dir", "--conflist"].iter().zip(args) {
        cmd.arg(flag).arg(path);
    }
    cmd.args(extra).output().expect("run nearhost install-cni")
}

fn list(ipam_subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "nearhost", "datapath": "bridge", "bridge": "nhk9", "isGateway": true,
         "ipam": {"type": "nearhost", "ranges": [[{"subnet": ipam_subnet}]]}}]})
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn the_plugin_and_the_list_are_installed_once_and_a_rerun_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, conf) = (t.path().join("a"), t.path().join("b"), t.path().join("net.d"));
    for d in [&a, &b, &conf] {
        std::fs::create_dir(d).unwrap();
    }
    let file = t.path().join("10-nearhost.conflist");
    std::fs::write(&file, serde_json::to_string_pretty(&list("198.18.90.0/24")).unwrap()).unwrap();
    // What an interrupted earlier run left behind.
    std::fs::write(a.join(".nearhost.4242.tmp"), b"half a binary").unwrap();

    let o = install(&[&a, &b, &conf, &file], &["--json"]);
    assert!(o.status.success(), "install-cni: {}", String::from_utf8_lossy(&o.stderr));
    let done: Value = serde_json::from_slice(&o.stdout).expect("--json is JSON");
    let actions: Vec<(&str, &str)> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["path"].as_str().unwrap(), d["action"].as_str().unwrap()))
        .collect();
    let (pa, pb, pc) = (a.join("nearhost"), b.join("nearhost"), conf.join("10-nearhost.conflist"));
    assert_eq!(
        actions,
        [
            (pa.to_str().unwrap(), "installed"),
            (pb.to_str().unwrap(), "installed"),
            (pc.to_str().unwrap(), "installed")
        ]
    );
    let me = std::fs::read(bin()).unwrap();
    for p in [&pa, &pb] {
        assert!(std::fs::read(p).unwrap() == me, "{} is not the binary", p.display());
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o7777, 0o755);
    }
    assert_eq!(std::fs::read(&pc).unwrap(), std::fs::read(&file).unwrap());
    assert_eq!(std::fs::metadata(&pc).unwrap().permissions().mode() & 0o7777, 0o644);
    assert_eq!(names(&a), ["nearhost"], "the stale temp file is gone, no new one is left");
    assert_eq!(names(&conf), ["10-nearhost.conflist"]);
    // The installed plugin answers as a runtime calls it.
    let v = Command::new(&pa)
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("supportedVersions"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );

    // Again: nothing is rewritten (same inodes), everything says unchanged.
    let inodes = |ps: &[&std::path::PathBuf]| -> Vec<u64> {
        ps.iter().map(|p| std::fs::metadata(p).unwrap().ino()).collect()
    };
    let was = inodes(&[&pa, &pb, &pc]);
    let o = install(&[&a, &b, &conf, &file], &[]);
    assert!(o.status.success(), "rerun: {}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert_eq!(said.lines().filter(|l| l.starts_with("unchanged ")).count(), 3, "{said}");
    assert_eq!(inodes(&[&pa, &pb, &pc]), was, "a rerun rewrote unchanged files");

    // A changed list, or a plugin someone damaged, is replaced.
    std::fs::write(&pb, b"#!/bin/sh\nexit 1\n").unwrap();
    std::fs::write(&file, serde_json::to_string(&list("198.18.91.0/24")).unwrap()).unwrap();
    let o = install(&[&a, &b, &conf, &file], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("unchanged {}", pa.display()))
            && said.contains(&format!("installed {}", pb.display()))
            && said.contains(&format!("installed {}", pc.display())),
        "{said}"
    );
    assert!(std::fs::read(&pb).unwrap() == me);
    assert!(std::fs::read_to_string(&pc).unwrap().contains("198.18.91.0/24"));
}

#[test]
fn a_bad_list_or_a_missing_directory_is_refused_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let (a, conf) = (t.path().join("bin"), t.path().join("net.d"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&conf).unwrap();
    let file = t.path().join("nh.conflist");
    let bad = |l: Value, says: &[&str]| {
        std::fs::write(&file, l.to_string()).unwrap();
        let o = install(&[&a, &a, &conf, &file], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{l} was installed");
        for s in says {
            assert!(err.contains(s), "for {l}: {err}");
        }
        assert!(names(&a).is_empty() && names(&conf).is_empty(), "something was written for {l}");
    };
    let mut l = list("198.18.92.0/24");
    l["plugins"][0]["datapath"] = json!("warp");
    bad(l, &["nh.conflist", "plugins[0] (nearhost)", "datapath", "warp"]);
    let mut l = list("198.18.92.0/24");
    l["plugins"][0]["ipam"]["ranges"] = json!([[{"subnet": "198.18.92.0/33"}]]);
    bad(l, &["plugins[0] (nearhost)", "198.18.92.0/33"]);
    let mut l = list("198.18.92.0/24");
    l["plugins"][0]["type"] = json!("bridge");
    bad(l, &["no plugin of type \"nearhost\""]);
    bad(json!({"cniVersion": "1.0.0", "plugins": [{"type": "nearhost"}]}), &["name: is required"]);

    // A good list, but a name no runtime would load, or no conf dir.
    std::fs::write(&file, list("198.18.92.0/24").to_string()).unwrap();
    let o = install(&[&a, &a, &conf, &file], &["--conf-name", "nearhost.yaml"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--conf-name: \"nearhost.yaml\""));
    let o = install(&[&a, &a, &t.path().join("nope"), &file], &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope: no such directory"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(names(&a).is_empty() && names(&conf).is_empty());
}

/// A runtime reads the conf dir whenever it likes: while the list is being
/// replaced, every read sees the old list or the new one, never a mix.
#[test]
fn a_reader_never_sees_a_half_written_list() {
    let t = tempfile::tempdir().unwrap();
    let (a, conf) = (t.path().join("bin"), t.path().join("net.d"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&conf).unwrap();
    // Two lists that differ over their whole length.
    let big = |subnet: &str, pad: &str| {
        let mut l = list(subnet);
        l["plugins"][0]["padding-note"] = json!(pad.repeat(200_000));
        l
    };
    let lists = [big("198.18.93.0/24", "a"), big("198.18.94.0/24", "b")];
    let files: Vec<_> = lists
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let dir = t.path().join(format!("src{i}"));
            std::fs::create_dir(&dir).unwrap();
            let f = dir.join("10-nearhost.conflist");
            std::fs::write(&f, l.to_string()).unwrap();
            f
        })
        .collect();
    let target = conf.join("10-nearhost.conflist");
    let o = install(&[&a, &a, &conf, &files[0]], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, target, lists) = (stop.clone(), target.clone(), lists.clone());
        std::thread::spawn(move || {
            let (mut reads, mut seen) = (0u32, [0u32; 2]);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                let bytes = std::fs::read(&target).expect("the list is always there");
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("read {} bytes that are not a whole list: {e}", bytes.len())
                });
                let i = lists.iter().position(|l| *l == v).expect("one of the two lists");
                seen[i] += 1;
                reads += 1;
            }
            (reads, seen)
        })
    };
    for round in 0..30 {
        let o = install(&[&a, &a, &conf, &files[(round + 1) % 2]], &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, seen) = reader.join().expect("every read was a whole list");
    assert!(seen[0] > 0 && seen[1] > 0, "the reader saw both lists ({reads} reads: {seen:?})");
}
