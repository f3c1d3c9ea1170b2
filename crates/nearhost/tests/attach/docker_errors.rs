//! Errors only a container engine can cause, each with nothing left behind.

use crate::attach_support::*;
use crate::docker::{engine_host_and_network, IMAGE};

#[test]
fn docker_errors_leave_nothing_behind() {
    let (d, h, cli) = engine_host_and_network(93, "err", "macvlan", 93, &["--master", "eth0"]);
    let web = d.run("web");
    let ns = netns_of_pid(web.pid);
    let refused = |cli: &Cli, args: &[&str], kind: &str, needles: &[&str]| {
        let before = snapshot(&h, &ns, "err", cli);
        cli.fails(&[&["attach"], args].concat()).expect_err(kind, needles);
        assert_eq!(snapshot(&h, &ns, "err", cli), before, "attach {args:?} changed something");
    };

    refused(
        &cli,
        &["nosuch", "--net", "err"],
        "target_not_found",
        &[&format!("no container \"nosuch\" in Docker ({})", d.host)],
    );
    d.must(&["create", "--network", "none", "--name", "idle", IMAGE, "sleep", "3600"]);
    refused(
        &cli,
        &["idle", "--net", "err"],
        "not_running",
        &["container \"idle\" (Docker) is not running (status: created); start it first"],
    );
    d.run("killed");
    d.must(&["kill", "killed"]);
    refused(&cli, &["killed", "--net", "err"], "not_running", &["(status: exited)"]);
    refused(
        &cli,
        &["web", "--net", "err", "--ifname", "lo"],
        "plugin",
        &["interface \"lo\" already exists", "choose another --ifname"],
    );
    let no_docker = Cli::new(&h.ns).env("DOCKER_HOST", "unix:///run/nht-no-docker.sock");
    std::fs::create_dir_all(no_docker.net_dir()).unwrap();
    std::fs::copy(cli.net_dir().join("err.conflist"), no_docker.net_dir().join("err.conflist"))
        .unwrap();
    no_docker.fails(&["attach", "web", "--net", "err", "--engine", "docker"]).expect_err(
        "engine_unreachable",
        &["Docker is not reachable at unix:///run/nht-no-docker.sock: connect: No such file or directory", "is dockerd running?"],
    );

    cli.json(&["attach", "web", "--net", "err"]);
    refused(
        &cli,
        &["web", "--net", "err"],
        "already_attached",
        &["web is already attached to network \"err\" (interface eth1)"],
    );
    refused(
        &cli,
        &[&web.id, "--net", "err", "--ifname", "eth2"],
        "already_attached",
        &["(interface eth1)"],
    );
    cli.json(&["detach", "web", "--net", "err"]);
    assert!(h.reservations("err").is_empty());
}
