//! Every error a user of `nearhost attach` can cause: a kind for scripts, a
//! message naming what was wrong and what to do, and nothing changed — no
//! link in the host or the target, no reservation, no record.

use crate::attach_support::*;
use crate::support::*;

/// A network "err" with one attachment (so IPAM state and a record exist),
/// and a second process to attach.
struct Setup {
    h: Host,
    cli: Cli,
    attached: Sleeper,
    target: Sleeper,
    ns: Netns,
}

fn setup(net: u8) -> Setup {
    let h = Host::new(net);
    let cli = Cli::new(&h.ns);
    cli.net_create(&h, "err", "macvlan", net, &["--master", "eth0"]);
    let attached = Sleeper::new();
    cli.json(&["attach", &attached.pid().to_string(), "--net", "err"]);
    let target = Sleeper::new();
    let ns = netns_of_pid(target.pid());
    Setup { h, cli, attached, target, ns }
}

impl Setup {
    /// Runs `attach ARGS` (TARGET first), expects `kind` with `needles`, and
    /// checks that nothing changed.
    #[track_caller]
    fn refused(&self, args: &[&str], kind: &str, needles: &[&str]) {
        let before = snapshot(&self.h, &self.ns, "err", &self.cli);
        self.cli.fails(&[&["attach"], args].concat()).expect_err(kind, needles);
        assert_eq!(
            snapshot(&self.h, &self.ns, "err", &self.cli),
            before,
            "attach {args:?} changed something"
        );
    }
}

#[test]
fn network_missing_or_invalid() {
    let s = setup(70);
    let pid = s.target.pid().to_string();
    s.refused(
        &[&pid, "--net", "nope"],
        "network_not_found",
        &["network \"nope\" is not defined in", "(defined: err)", "nearhost net create nope"],
    );
    std::fs::write(s.cli.net_dir().join("broken.conf"), "{\"cniVersion\": ").unwrap();
    s.refused(
        &[&pid, "--net", "broken"],
        "network_invalid",
        &["broken.conf is invalid: not valid JSON"],
    );
    let bad = r#"{"cniVersion": "1.1.0", "name": "bad", "type": "nearhost", "datapath": "macvlan", "mode": "turbo"}"#;
    std::fs::write(s.cli.net_dir().join("bad.conf"), bad).unwrap();
    s.refused(
        &[&pid, "--net", "bad"],
        "network_invalid",
        &["bad.conf is invalid: mode: \"turbo\" is not one of"],
    );
    let no_ranges = r#"{"cniVersion": "1.1.0", "name": "noip", "type": "nearhost", "datapath": "macvlan", "ipam": {"type": "nearhost"}}"#;
    std::fs::write(s.cli.net_dir().join("noip.conf"), no_ranges).unwrap();
    s.refused(
        &[&pid, "--net", "noip"],
        "network_invalid",
        &["ipam.ranges: at least one range set is required"],
    );
}

#[test]
fn targets_that_do_not_exist_or_cannot_be_asked() {
    let s = setup(71);
    s.refused(&["4000000", "--net", "err"], "target_not_found", &["no process with PID 4000000"]);
    s.refused(
        &["/run/netns/nht-no-such-ns", "--net", "err"],
        "not_netns",
        &["/run/netns/nht-no-such-ns is not a network namespace: no such file"],
    );
    s.refused(&["/etc/hostname", "--net", "err"], "not_netns", &["it is not a namespace file"]);
    let no_docker = format!("unix://{}/no-docker.sock", s.cli.dir.path().display());
    let no_podman = format!("unix://{}/no-podman.sock", s.cli.dir.path().display());
    s.refused(
        &["web", "--net", "err"],
        "engine_unreachable",
        &[
            &format!("Docker is not reachable at {no_docker}: connect:"),
            &format!("Podman is not reachable at {no_podman}: connect:"),
        ],
    );
    s.refused(
        &["web", "--net", "err", "--engine", "docker"],
        "engine_unreachable",
        &["is dockerd running? DOCKER_HOST selects another socket"],
    );
    s.refused(
        &["web", "--net", "err", "--engine", "podman"],
        "engine_unreachable",
        &["is podman.socket running? CONTAINER_HOST selects another socket"],
    );
    // Podman not installed: no CONTAINER_HOST and no podman on PATH (only `ip`,
    // which runs nearhost in the test's host namespace).
    let bare_path = tempfile::tempdir().unwrap();
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("ip (iproute2)");
    std::os::unix::fs::symlink(ip, bare_path.path().join("ip")).unwrap();
    let no_podman_cli =
        Cli { host: s.cli.host.clone(), dir: tempfile::tempdir().unwrap(), env: s.cli.env.clone() }
            .without_env("CONTAINER_HOST")
            .env("PATH", &bare_path.path().display().to_string());
    std::fs::create_dir_all(no_podman_cli.net_dir()).unwrap();
    std::fs::copy(
        s.cli.net_dir().join("err.conflist"),
        no_podman_cli.net_dir().join("err.conflist"),
    )
    .unwrap();
    no_podman_cli.fails(&["attach", "web", "--net", "err", "--engine", "podman"]).expect_err(
        "engine_unreachable",
        &["Podman is not reachable: not installed (no podman on PATH"],
    );
    let tcp = Cli {
        host: s.cli.host.clone(),
        dir: tempfile::tempdir().unwrap(),
        env: vec![("DOCKER_HOST".into(), "tcp://127.0.0.1:2375".into())],
    };
    std::fs::create_dir_all(tcp.net_dir()).unwrap();
    std::fs::copy(s.cli.net_dir().join("err.conflist"), tcp.net_dir().join("err.conflist"))
        .unwrap();
    tcp.fails(&["attach", "web", "--net", "err", "--engine", "docker"]).expect_err(
        "engine_unreachable",
        &["DOCKER_HOST=tcp://127.0.0.1:2375 is not a unix:// socket"],
    );
}

#[test]
fn the_host_namespace_is_refused() {
    let s = setup(72);
    let mut in_host = s.h.ns.spawn(&["sleep", "600"]);
    let pid = in_host.id().to_string();
    // `ip netns exec` execs sleep in the host namespace once it is set up.
    assert!(eventually(std::time::Duration::from_secs(5), || std::fs::read_link(format!(
        "/proc/{pid}/exe"
    ))
    .is_ok_and(|e| e.ends_with("sleep"))));
    s.refused(&[&pid, "--net", "err"], "host_namespace", &["shares this host's network namespace"]);
    s.refused(
        &["/proc/self/ns/net", "--net", "err"],
        "host_namespace",
        &["docker run --network none, unshare --net"],
    );
    let _ = in_host.kill();
    let _ = in_host.wait();
}

#[test]
fn interface_name_taken_and_attaching_twice() {
    let s = setup(73);
    let pid = s.target.pid().to_string();
    s.ns.ip(&["link", "add", "eth1", "type", "veth", "peer", "name", "peer1"]);
    s.refused(
        &[&pid, "--net", "err"],
        "plugin",
        &["interface \"eth1\" already exists", "choose another --ifname"],
    );
    assert!(s.ns.link("eth1").is_some(), "the container's own eth1 must survive");
    let first = s.attached.pid().to_string();
    s.refused(
        &[&first, "--net", "err"],
        "already_attached",
        &[
            &format!("{first} is already attached to network \"err\" (interface eth1)"),
            "nearhost detach",
        ],
    );
    s.refused(
        &[&first, "--net", "err", "--ifname", "eth2"],
        "already_attached",
        &["(interface eth1)"],
    );
}

#[test]
fn bad_flags_and_static_addresses() {
    let s = setup(74);
    let pid = s.target.pid().to_string();
    s.refused(
        &[&pid, "--net", "err", "--ifname", "much-too-long-name"],
        "bad_flag",
        &["--ifname \"much-too-long-name\": is longer than 15 bytes"],
    );
    s.refused(
        &[&pid, "--net", "err", "--ip", "nope"],
        "bad_flag",
        &["--ip \"nope\": is not an IP address"],
    );
    s.refused(
        &[&pid, "--net", "err", "--ip", "198.18.74.120", "--ip", "198.18.74.121"],
        "bad_flag",
        &["a second address of the same family"],
    );
    s.refused(
        &[&pid, "--net", "err", "--mac", "01:00:5e:00:00:01"],
        "bad_flag",
        &["--mac \"01:00:5e:00:00:01\": is not a unicast MAC address"],
    );
    let taken = s.h.reservations("err")[0].clone();
    s.refused(
        &[&pid, "--net", "err", "--ip", &taken],
        "plugin",
        &[&format!("requested address {taken} is already reserved"), "choose another --ip"],
    );
    s.refused(
        &[&pid, "--net", "err", "--ip", "198.18.74.20"],
        "plugin",
        &["198.18.74.20 is not in any configured range", "--ip must lie inside"],
    );
}

#[test]
fn detach_of_what_is_not_attached() {
    let s = setup(75);
    let pid = s.target.pid().to_string();
    let before = snapshot(&s.h, &s.ns, "err", &s.cli);
    s.cli.fails(&["detach", &pid, "--net", "err"]).expect_err(
        "not_attached",
        &[&format!("{pid} is not attached to network \"err\""), "nearhost ls"],
    );
    let first = s.attached.pid().to_string();
    s.cli
        .fails(&["detach", &first, "--net", "err", "--ifname", "eth9"])
        .expect_err("not_attached", &["with interface eth9"]);
    s.cli
        .fails(&["detach", "4000000", "--net", "err"])
        .expect_err("target_not_found", &["no process with PID 4000000"]);
    assert_eq!(snapshot(&s.h, &s.ns, "err", &s.cli), before);
}
