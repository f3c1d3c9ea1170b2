//! The command line's own documentation, generated from its clap definitions:
//! the version with the commit, man pages, shell completions.

use std::process::Command;

use nearhost_testkit::bin;

fn out(args: &[&str]) -> String {
    let o = Command::new(bin()).args(args).output().expect("run nearhost");
    assert!(o.status.success(), "nearhost {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `--version` names the commit: from git in a checkout, from the COMMIT file
/// `git archive` fills in otherwise (the fresh-root check builds from one).
#[test]
fn version_names_the_version_and_the_commit() {
    let v = out(&["--version"]);
    let commit = v
        .trim()
        .strip_prefix(&format!("nearhost {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {v:?}"));
    assert!(
        commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a commit: {commit:?}"
    );
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(g) = git.ok().filter(|g| g.status.success()) {
        assert_eq!(commit, String::from_utf8_lossy(&g.stdout).trim(), "the checkout's HEAD");
    }
    assert!(out(&["version"])
        .starts_with(&format!("nearhost {}", v.trim().trim_start_matches("nearhost "))));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let listed = out(&["man", "--dir", &dir.path().display().to_string()]);
    for page in [
        "nearhost", "nearhost-agent", "nearhost-bench", "nearhost-demo", "nearhost-attach",
        "nearhost-pool-create", "nearhost-ipam-repair",
    ] {
        let path = dir.path().join(format!("{page}.1"));
        assert!(listed.contains(&path.display().to_string()), "{page}.1 not listed: {listed}");
        // roff escapes a hyphen as `\-`.
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{page}.1: {e}"))
            .replace("\\-", "-");
        let title = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert!(title.starts_with(&format!(".TH {page} 1 ")), "{page}.1's title line: {title:?}");
        assert!(title.contains(env!("CARGO_PKG_VERSION")), "{page}.1's title line: {title:?}");
    }
    let top = std::fs::read_to_string(dir.path().join("nearhost.1")).unwrap();
    for sub in ["agent", "bench", "demo", "attach", "ipam", "man", "completions"] {
        assert!(top.contains(sub), "nearhost.1 does not mention {sub}");
    }
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let script = out(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nearhost.bash");
    std::fs::write(&file, script).unwrap();
    // Load it into bash and ask it, as the shell would on <TAB> after "nearhost a".
    let probe = format!(
        "source {}; COMP_WORDS=(nearhost a); COMP_CWORD=1; COMP_LINE='nearhost a'; COMP_POINT=10; _nearhost nearhost a nearhost; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let words = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for w in ["agent", "attach"] {
        assert!(words.lines().any(|l| l == w), "no {w} in {words:?}");
    }
    for shell in ["zsh", "fish"] {
        let s = out(&["completions", shell]);
        assert!(s.contains("nearhost") && s.contains("agent"), "{shell}: {s}");
    }
}

/// `nearhost tune` on a fake host (`--root`): the study's host, planned,
/// applied, checked, reverted; the refusals name what is wrong and change
/// nothing.
#[test]
fn tune_plans_applies_and_reverts_on_a_fake_host() {
    use nearhost_testkit::fake_host::Shape;
    let shape = Shape { nodes: 2, cores: 9, threads: 2, nics: vec![("eth0", 2, Some(0))] };
    let dir = tempfile::tempdir().unwrap();
    shape.write(dir.path());
    let root = dir.path().display().to_string();
    let state = dir.path().join("tune.json").display().to_string();
    let files = || nearhost_testkit::fake_host::snapshot(dir.path(), "tune.json");
    // plan and apply take --net-dir (no networks here: every NIC is tuned).
    let run = |args: &[&str]| {
        let planning = matches!(args[0], "plan" | "apply");
        Command::new(bin())
            .arg("tune")
            .args(args)
            .args(["--root", &root])
            .args(if planning { &["--net-dir", "/nonexistent"][..] } else { &[] })
            .output()
            .expect("run nearhost")
    };
    let before = files();

    let plan = run(&["plan", "--reserve-cpus", "18-35", "--json", "--state", &state]);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let change =
        |path: &str| p["changes"].as_array().unwrap().iter().find(|c| c["path"] == path).cloned();
    let rps = change("sys/class/net/eth0/queues/rx-0/rps_cpus").expect("RPS planned");
    assert_eq!(rps["new"], "00000000,0003fdfe");
    assert_eq!(rps["old"], "00000000,00000000");
    assert_eq!(change("proc/irq/42/smp_affinity_list").unwrap()["new"], "9");
    let text = run(&["plan", "--reserve-cpus", "18-35", "--state", &state]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("eth0 IRQ 41 (eth0-TxRx-0) affinity") && text.contains("0-35 → 0"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no escapes off a terminal");
    assert_eq!(files(), before, "plan writes nothing");

    for (args, want) in [
        (
            &["plan", "--profile", "latncy"][..],
            "profile: \"latncy\" is not one of latency, throughput",
        ),
        (&["plan", "--nic", "eth7"][..], "--nic: no NIC named \"eth7\""),
        (
            &["plan", "--reserve-cpus", "30-40"][..],
            "--reserve-cpus: CPU 36-40 is not on this machine",
        ),
        (&["apply", "--reserve-cpus", "0-99"][..], "--reserve-cpus: CPU 36-99"),
    ] {
        let out = run(&[args, &["--state", &state][..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(files(), before, "refusals change nothing");

    let apply = run(&["apply", "--reserve-cpus", "18-35", "--state", &state]);
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stderr));
    let again = run(&["apply", "--reserve-cpus", "18-35", "--state", &state]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 changes made"), "idempotent");
    let status = run(&["status", "--json", "--state", &state]);
    assert!(
        status.status.success(),
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["applied"], true);
    assert_eq!(s["profile"], "latency");
    let revert = run(&["revert", "--state", &state]);
    assert!(revert.status.success(), "{}", String::from_utf8_lossy(&revert.stderr));
    assert_eq!(files(), before, "revert restores every file byte for byte");
}

/// On the real root, apply and revert refuse unless told the host is ours.
#[test]
fn tune_apply_refuses_the_real_host_without_host_is_mine() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tune.json").display().to_string();
    for args in [&["apply", "--state", &state][..], &["revert", "--state", &state][..]] {
        let out = Command::new(bin()).arg("tune").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--host-is-mine"), "{args:?}: {err}");
    }
    assert!(!dir.path().join("tune.json").exists());
}

/// `nearhost doctor` on this machine's kernel: link kinds probed in a
/// scratch namespace (nothing created in ours, no namespace left), the
/// known answers of this kernel (macvlan and vxlan yes; ipvlan, bonding,
/// netkit not built), and the NICs of a fake host read through --root.
#[test]
fn doctor_probes_in_a_scratch_namespace_and_reports_the_nics() {
    use nearhost_testkit::fake_host::Shape;
    let links = || {
        let o = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let netns = || std::fs::read_dir("/run/netns").map(|d| d.count()).unwrap_or(0);
    let (links_before, netns_before) = (links(), netns());
    let shape = Shape { nodes: 1, cores: 4, threads: 1, nics: vec![("eth0", 4, None)] };
    let dir = tempfile::tempdir().unwrap();
    shape.write(dir.path());
    std::fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.12.0-test\n").ok();
    let out = Command::new(bin())
        .args(["doctor", "--json", "--net-dir", "/nonexistent", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "{code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = |kind: &str| {
        r["probes"].as_array().unwrap().iter().find(|p| p["kind"] == kind).unwrap()["support"]
            ["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The fake tree has no proc/modules: as on a kernel without modules,
    // every kind is probed (this machine's kernel decides).
    let here = |kind: &str| nearhost_testkit::kernel_has(kind);
    assert_eq!(state("macvlan"), "yes");
    assert_eq!(state("vxlan"), "yes");
    assert_eq!(state("ipvlan"), if here("ipvlan") { "yes" } else { "no" });
    assert_eq!(state("bond"), if here("bond") { "yes" } else { "no" });
    assert_eq!(state("dummy"), if here("dummy") { "yes" } else { "no" });
    let eth0 = &r["nics"][0];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["irqs"].as_array().unwrap().len(), 4);
    assert_eq!(r["cpus"], 4);
    let recs: Vec<&str> = r["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["datapath"].as_str().unwrap())
        .collect();
    assert_eq!(recs[0], "macvlan", "{recs:?}");
    assert!(r["tuning"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t.as_str().unwrap().contains("eth0 IRQ")));
    assert_eq!(
        code == Some(0),
        r["in_the_way"].as_array().unwrap().is_empty(),
        "exit code 3 iff something is in the way"
    );
    assert_eq!((links(), netns()), (links_before, netns_before), "the probes left nothing");
}
