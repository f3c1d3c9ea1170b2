//! A plain process in its own namespace (`unshare --net sleep`), attached by PID.

use crate::attach_support::*;
use crate::support::*;

fn ip_of(attachment: &serde_json::Value) -> String {
    let a =
        attachment["addresses"][0].as_str().unwrap_or_else(|| panic!("no address: {attachment}"));
    a.split('/').next().unwrap().to_string()
}

#[test]
fn processes_attached_by_pid_reach_each_other_and_the_gateway() {
    let h = Host::new(60);
    let cli = Cli::new(&h.ns);
    cli.net_create(&h, "fast", "macvlan", 60, &["--master", "eth0"]);
    let (a, mut b) = (Sleeper::new(), Sleeper::new());
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let ra = cli.json(&["attach", &pa, "--net", "fast"]);
    let rb = cli.json(&[
        "attach",
        &pb,
        "--net",
        "fast",
        "--ifname",
        "fast0",
        "--ip",
        &h.v4(150),
        "--mac",
        "02:00:00:00:60:02",
    ]);
    let (na, nb) = (netns_of_pid(a.pid()), netns_of_pid(b.pid()));

    assert_eq!(
        (ra["target"]["kind"].as_str(), ra["target"]["pid"].as_u64()),
        (Some("pid"), Some(a.pid() as u64))
    );
    assert_eq!((ra["ifname"].as_str(), ra["datapath"].as_str()), (Some("eth1"), Some("macvlan")));
    assert_eq!(ra["result"]["interfaces"][0]["sandbox"], format!("/proc/{pa}/ns/net"));
    let link = na.link("eth1").expect("eth1 in the process's namespace");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(nb.addrs("fast0"), vec![format!("{}/24", h.v4(150))]);
    assert_eq!(nb.link("fast0").unwrap()["address"], "02:00:00:00:60:02");
    assert_eq!(ip_of(&rb), h.v4(150));
    assert!(na.ping(&h.v4(150)), "process a cannot reach process b");
    assert!(nb.ping(&h.v4(1)), "process b cannot reach the gateway");
    let mut held = h.reservations("fast");
    held.sort();
    assert_eq!(held, vec![h.v4(100), h.v4(150)]);

    let listed = cli.json(&["ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed.as_array().unwrap().iter().all(|l| l["status"] == "attached"), "{listed}");

    let gone = cli.json(&["detach", &pa, "--net", "fast"]);
    assert_eq!(gone["addresses"][0], format!("{}/24", h.v4(100)));
    assert!(na.link("eth1").is_none(), "detach left eth1 behind");
    assert_eq!(h.reservations("fast"), vec![h.v4(150)]);

    drop(nb);
    b.kill();
    let listed = cli.json(&["ls"]);
    assert_eq!(listed[0]["status"], "gone", "{listed}");
    assert_eq!(listed[0]["reason"], format!("process {pb} exited"));
    let report = cli.json(&["gc"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 1, "{report}");
    assert!(h.reservations("fast").is_empty(), "gc did not release the address");
    assert!(cli.records().is_empty(), "gc left a record: {:?}", cli.records());
    assert_eq!(
        cli.json(&["gc"])["removed"].as_array().unwrap().len(),
        0,
        "a second gc has nothing to do"
    );
    assert_eq!(h.ns.link_names(), vec!["eth0"]);
}

#[test]
fn a_reused_pid_is_not_the_attached_process() {
    let h = Host::new(61);
    let cli = Cli::new(&h.ns);
    cli.net_create(&h, "fast", "macvlan", 61, &["--master", "eth0"]);
    let a = Sleeper::new();
    let ra = cli.json(&["attach", &a.pid().to_string(), "--net", "fast"]);
    // The CNI container ID carries the process's start time, so a later
    // process with the same PID is a different container.
    let id = ra["target"]["containerId"].as_str().unwrap();
    assert!(id.starts_with(&format!("pid-{}-", a.pid())), "{id}");
    assert_eq!(
        ra["target"]["pidStart"].as_u64().map(|s| s.to_string()),
        id.rsplit('-').next().map(str::to_string)
    );
    cli.json(&["detach", &a.pid().to_string(), "--net", "fast"]);
}

#[test]
fn ls_check_runs_the_plugins_check() {
    let h = Host::new(66);
    let cli = Cli::new(&h.ns);
    cli.net_create(&h, "fast", "macvlan", 66, &["--master", "eth0"]);
    let a = Sleeper::new();
    let pid = a.pid().to_string();
    cli.json(&["attach", &pid, "--net", "fast"]);
    assert_eq!(cli.json(&["ls", "--check"])[0]["status"], "attached");
    let ns = netns_of_pid(a.pid());
    ns.ip(&["addr", "flush", "dev", "eth1"]);
    let row = &cli.json(&["ls", "--check"])[0];
    assert_eq!(row["status"], "differs", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains("plugin nearhost CHECK failed (CNI error 106)")
            && reason.contains("eth1 lacks address 198.18.66.100/24"),
        "{reason}"
    );
    assert_eq!(
        cli.json(&["ls"])[0]["status"],
        "attached",
        "without --check only liveness is looked at"
    );
    assert_eq!(
        cli.json(&["gc"])["removed"].as_array().unwrap().len(),
        0,
        "gc leaves live attachments alone"
    );
    cli.json(&["detach", &pid, "--net", "fast"]);
    assert!(ns.link_names().is_empty());
}

/// `net create --host-reach`: the host reaches a process on a macvlan network
/// (and it the host) through the second link; without it, it cannot.
#[test]
fn a_host_reach_network_lets_the_host_and_the_process_talk() {
    let h = Host::new(67);
    let cli = Cli::new(&h.ns);
    cli.net_create(
        &h,
        "reach",
        "macvlan",
        67,
        &["--master", "eth0", "--host-reach", "--service-cidr", "198.18.251.0/24"],
    );
    // The same subnet, another range: only --host-reach differs.
    let data = h.data_dir();
    cli.json(&[
        "net", "create", "plain", "--datapath", "macvlan", "--master", "eth0", "--subnet",
        "198.18.67.0/24", "--range", "198.18.67.200-198.18.67.250", "--data-dir", &data,
    ]);
    let shown = cli.json(&["net", "show", "reach"]);
    assert_eq!(
        shown["config"]["plugins"][0]["hostReach"],
        serde_json::json!({"serviceCIDRs": ["198.18.251.0/24"]})
    );
    let (a, b) = (Sleeper::new(), Sleeper::new());
    let ra = cli.json(&["attach", &a.pid().to_string(), "--net", "reach"]);
    let rb = cli.json(&["attach", &b.pid().to_string(), "--net", "plain"]);
    let (na, nb) = (netns_of_pid(a.pid()), netns_of_pid(b.pid()));
    assert!(na.link("hr-eth1").is_some(), "the host link is in the process's namespace");
    assert!(h.ns.ping(&ip_of(&ra)), "the host reaches the process over its host link");
    assert!(na.ping(&h.v4(2)), "the process reaches its host");
    assert!(!h.ns.ping(&ip_of(&rb)), "without --host-reach the host cannot reach a macvlan child");
    assert!(nb.link("hr-eth1").is_none());
    cli.json(&["detach", &a.pid().to_string(), "--net", "reach"]);
    cli.json(&["detach", &b.pid().to_string(), "--net", "plain"]);
    assert!(na.link("hr-eth1").is_none() && na.link("eth1").is_none());
    assert!(!h.ns.link_names().iter().any(|l| l.starts_with("nhh")), "{:?}", h.ns.link_names());
    cli.fails(&[
        "net", "create", "x", "--datapath", "bridge", "--subnet", "198.18.79.0/24", "--host-reach",
    ])
    .expect_err("bad_flag", &["--host-reach", "applies only to --datapath macvlan and ipvlan"]);
}
