//! Pods on a nearhost network through containerd's CRI.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::cri::Containerd;
use crate::support::*;

/// A command in a pod's network namespace (through its sandbox process).
fn in_pod(pid: u32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(args)
        .output()
        .expect("nsenter")
}

#[test]
fn pods_get_addresses_reach_each_other_and_publish_a_host_port() {
    let mut c = Containerd::start(74);
    let data = c.host.data_dir();
    c.network(&json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [{
        "type": "nearhost", "datapath": "bridge", "bridge": "nhk0", "isGateway": true, "ipMasq": true,
        "capabilities": {"portMappings": true},
        "ipam": {"type": "nearhost", "dataDir": data, "ranges": [[{"subnet": "198.18.174.0/24", "gateway": "198.18.174.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}}]}));

    let web = c
        .run_pod("web", &[(18080, 8080)])
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()));
    let client =
        c.run_pod("client", &[]).unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()));
    let (web_ips, web_pid, web_ns) = c.pod_status(&web);
    let (client_ips, client_pid, client_ns) = c.pod_status(&client);
    let (web_ip, client_ip) = (web_ips[0].clone(), client_ips[0].clone());
    assert!(
        web_ip.starts_with("198.18.174.")
            && client_ip.starts_with("198.18.174.")
            && web_ip != client_ip,
        "pod IPs from the range: {web_ip} {client_ip}"
    );
    assert!(
        web_pid > 0 && (web_ns.starts_with("/var/run/netns/") || web_ns.starts_with("/run/netns/")),
        "sandbox pid {web_pid}, netns {web_ns}"
    );
    let eth0 = String::from_utf8_lossy(
        &in_pod(web_pid, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout,
    )
    .into_owned();
    assert!(
        eth0.contains(&format!("{web_ip}/24")),
        "what containerd reports is on the pod's eth0: {eth0}"
    );
    let lo = String::from_utf8_lossy(&in_pod(web_pid, &["ip", "-o", "link", "show", "lo"]).stdout)
        .into_owned();
    assert!(lo.contains("UP"), "the CRI's loopback plugin ran too: {lo}");
    let ping = |pid: u32, ip: &str| {
        (0..3).any(|_| in_pod(pid, &["ping", "-c", "1", "-W", "1", ip]).status.success())
    };
    assert!(ping(client_pid, &web_ip), "client pod reaches web pod");
    assert!(ping(web_pid, "198.18.174.1"), "web pod reaches its gateway");
    assert_eq!(c.host.reservations("pods").len(), 2);

    // The kubelet's hostPort: containerd sends it as `HostPort`.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "served from a CRI pod\n").unwrap();
    let _server = KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net=/proc/{web_pid}/ns/net"))
            .args(["python3", "-m", "http.server", "8080", "--bind", &web_ip, "--directory"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http.server in the pod"),
    );
    let url = format!("http://{}:18080/index.html", c.host.v4(2));
    let gw = c.host.gw.name.clone();
    let fetch = || http_get_in(&gw, &url);
    assert!(eventually(Duration::from_secs(10), || fetch().is_some()), "{url} never answered");
    assert_eq!(fetch().as_deref(), Some("served from a CRI pod"));

    // Stop: DEL with the namespace. Remove: DEL again, with an empty CNI_NETNS.
    c.stop_pod(&web);
    assert_eq!(c.host.reservations("pods").len(), 1, "web's address released at stop");
    assert_eq!(fetch(), None, "the host port is gone with the pod");
    c.remove_pod(&web);
    c.stop_pod(&client);
    c.remove_pod(&client);
    assert!(c.host.reservations("pods").is_empty(), "{:?}", c.host.state_file("pods"));
    assert!(c.pods().is_empty());
    for ns in [web_ns, client_ns] {
        assert!(!Path::new(&ns).exists(), "containerd removed {ns}");
    }
    // What containerd sent: the pod's identity in CNI_ARGS; DEL at stop with
    // the namespace, and again at removal without one.
    let calls: Vec<_> = c
        .cni_calls()
        .into_iter()
        .filter(|(_, _, args)| args.split(';').any(|a| a == "K8S_POD_NAME=web"))
        .collect();
    let verbs: Vec<&str> = calls.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(verbs, ["ADD", "DEL", "DEL"], "containerd's calls for the web pod: {calls:?}");
    assert!(
        calls[0].2.contains("K8S_POD_NAMESPACE=default")
            && calls[0].2.contains("K8S_POD_UID=uid-web"),
        "{calls:?}"
    );
    assert_eq!(calls[1].1, calls[0].1, "DEL at stop names the pod's namespace");
    assert_eq!(calls[2].1, "", "DEL at removal comes with an empty CNI_NETNS");
    let rules =
        String::from_utf8_lossy(&c.host.ns.exec(&["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(!rules.contains("18080"), "no rule for the port is left: {rules}");
}

#[test]
fn pods_on_macvlan_reach_each_other_and_the_gateway() {
    let mut c = Containerd::start(75);
    let ipam = c.host.ipam_v4();
    c.network(&json!({"cniVersion": "1.0.0", "name": "fast", "plugins": [{"type": "nearhost", "datapath": "macvlan", "master": "eth0", "ipam": ipam}]}));
    let pods: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| {
            c.run_pod(n, &[]).unwrap_or_else(|e| panic!("RunPodSandbox {n}: {e}\n{}", c.log()))
        })
        .collect();
    let status: Vec<(Vec<String>, u32, String)> = pods.iter().map(|p| c.pod_status(p)).collect();
    let (a_ip, b_ip) = (status[0].0[0].clone(), status[1].0[0].clone());
    assert!(
        a_ip.starts_with("198.18.75.") && b_ip.starts_with("198.18.75.") && a_ip != b_ip,
        "{a_ip} {b_ip}"
    );
    let kind =
        String::from_utf8_lossy(&in_pod(status[0].1, &["ip", "-d", "link", "show", "eth0"]).stdout)
            .into_owned();
    assert!(kind.contains("macvlan"), "the pod's eth0 is a macvlan: {kind}");
    let ping = |pid: u32, ip: &str| {
        (0..3).any(|_| in_pod(pid, &["ping", "-c", "1", "-W", "1", ip]).status.success())
    };
    assert!(ping(status[0].1, &b_ip), "pod a reaches pod b");
    assert!(ping(status[1].1, &c.host.v4(1)), "pod b reaches the gateway beyond the host");
    for p in &pods {
        c.stop_pod(p);
        c.remove_pod(p);
    }
    assert!(c.host.reservations("fast").is_empty(), "{:?}", c.host.state_file("fast"));
    for (_, _, ns) in status {
        assert!(!Path::new(&ns).exists(), "containerd removed {ns}");
    }
}

/// `nearhost install-cni` (a DaemonSet's init container) puts the plugin and
/// the list into containerd's CNI directories; containerd reads that list and
/// runs that plugin for a pod.
#[test]
fn containerd_runs_pods_on_the_plugin_and_list_install_cni_put_in_place() {
    let mut c = Containerd::start(76);
    let (bin_dir, conf_dir) = c.cni_dirs();
    // Only what install-cni writes: no recorder in front of the plugin.
    std::fs::remove_file(bin_dir.join("nearhost")).unwrap();
    let src = tempfile::tempdir().unwrap();
    let list = src.path().join("10-nearhost.conflist");
    let ipam = c.host.ipam_v4();
    std::fs::write(
        &list,
        json!({"cniVersion": "1.0.0", "name": "installed", "plugins": [{"type": "nearhost", "datapath": "macvlan", "master": "eth0", "ipam": ipam}]})
            .to_string(),
    )
    .unwrap();
    let o = Command::new(bin())
        .arg("install-cni")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--conf-dir")
        .arg(&conf_dir)
        .arg("--conflist")
        .arg(&list)
        .output()
        .unwrap();
    assert!(o.status.success(), "install-cni: {}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(bin_dir.join("nearhost")).unwrap() == std::fs::read(bin()).unwrap());

    let pod =
        c.run_pod("installed", &[]).unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log()));
    let (ips, pid, _) = c.pod_status(&pod);
    assert!(ips[0].starts_with("198.18.76."), "an address of the installed list's range: {ips:?}");
    let kind =
        String::from_utf8_lossy(&in_pod(pid, &["ip", "-d", "-o", "addr", "show", "eth0"]).stdout)
            .into_owned();
    assert!(kind.contains(&format!("{}/", ips[0])), "the pod's eth0 has it: {kind}");
    assert_eq!(c.host.reservations("installed").len(), 1, "the installed list's network");
    assert!(c.cni_calls().is_empty(), "containerd ran the installed plugin, not a recorder");
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    assert!(c.host.reservations("installed").is_empty());
}
