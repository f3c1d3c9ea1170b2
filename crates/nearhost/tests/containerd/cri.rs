//! A containerd per test with its CRI plugin on, every root in a temporary
//! directory: CNI `bin_dir` holds `nearhost` (the binary under test) and the
//! reference `loopback` (the CRI sets up `lo` with it), `conf_dir` the test's
//! network list; the sandbox ("pause") image is busybox in an OCI layout built
//! here and imported with `ctr` (no registry). containerd runs with `nsenter
//! --net` in the test's host namespace, so every CNI call it makes happens
//! there; `nsenter`, not `ip netns exec`, which would hide the cgroup mounts.
//! `restrict_oom_score_adj`: the CRI gives sandboxes an oom_score_adj of -998,
//! which needs CAP_SYS_RESOURCE, and this machine's root has none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::images::{self, busybox_rootfs_tar, unmount_under};
use crate::support::{bin, terminate, Host};

pub const PAUSE: &str = "docker.io/nearhost-test/pause:latest";

pub struct Containerd {
    pub host: Host,
    dir: tempfile::TempDir,
    child: Child,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_string()
}

/// An OCI image layout tarball: busybox, entrypoint `sleep` (a pause stand-in).
fn pause_image(dir: &Path) -> PathBuf {
    let layout = dir.join("pause-oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |path: &Path| -> (String, u64) {
        let digest = sha256(path);
        let size = std::fs::metadata(path).unwrap().len();
        std::fs::copy(path, blobs.join(&digest)).unwrap();
        (digest, size)
    };
    let write = |name: &str, v: &Value| -> (String, u64) {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        blob(&p)
    };
    let (layer, layer_size) = blob(&busybox_rootfs_tar(dir));
    let (config, config_size) = write(
        "config.json",
        &json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "100000000"], "Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]}}),
    );
    let (manifest, manifest_size) = write(
        "manifest.json",
        &json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer}"), "size": layer_size}]}),
    );
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest}"), "size": manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": PAUSE, "org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    images::tar_dir(&layout, &dir.join("pause.tar"))
}

impl Containerd {
    /// containerd in `Host::new(net)`, CNI config from [`Containerd::conf_dir`].
    pub fn start(net: u8) -> Containerd {
        assert!(
            Path::new("/usr/bin/containerd").exists(),
            "containerd is not installed (apt-get install containerd; docker.io brings it)"
        );
        // Short path: Unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("nhc").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path();
        for sub in ["cni-bin", "net.d"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The binary under test, behind a one-line recorder of what the
        // runtime passed (verb, namespace, CNI_ARGS): `exec` keeps stdin,
        // stdout and the exit status the plugin's own.
        let recorder = format!(
            "#!/bin/sh\necho \"$CNI_COMMAND|$CNI_NETNS|$CNI_ARGS\" >> {}/cni-calls.log\nexec {} \"$@\"\n",
            d.display(),
            bin()
        );
        std::fs::write(d.join("cni-bin/nearhost"), recorder).unwrap();
        std::fs::set_permissions(
            d.join("cni-bin/nearhost"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let loopback = ["/usr/lib/cni/loopback", "/opt/cni/bin/loopback"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        std::os::unix::fs::symlink(
            loopback.expect(
                "the reference loopback plugin (apt-get install containernetworking-plugins)",
            ),
            d.join("cni-bin/loopback"),
        )
        .unwrap();
        let toml = format!(
            r#"version = 2
root = "{0}/root"
state = "{0}/state"
[grpc]
  address = "{0}/c.sock"
[ttrpc]
  address = "{0}/c.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{0}/cni-bin"
    conf_dir = "{0}/net.d"
    max_conf_num = 1
"#,
            d.display()
        );
        std::fs::write(d.join("config.toml"), toml).unwrap();
        let host = Host::new(net);
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", host.ns.path()))
            .args(["containerd", "--config"])
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sock = d.join("c.sock");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let path = sock.clone();
        let channel = rt
            .block_on(Endpoint::try_from("http://[::]").unwrap().connect_with_connector(
                tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }),
            ))
            .expect("connect to containerd's CRI socket");
        let client = RuntimeServiceClient::new(channel);
        let c = Containerd { host, dir, child, rt, client };
        let tar = pause_image(c.dir.path());
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", "native"])
            .arg(&tar)
            .output()
            .expect("ctr images import");
        assert!(
            out.status.success(),
            "ctr images import: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    /// Writes the CNI network list containerd will use.
    pub fn network(&self, list: &Value) {
        std::fs::write(
            self.dir.path().join("net.d/10-nearhost.conflist"),
            serde_json::to_string_pretty(list).unwrap(),
        )
        .unwrap();
    }

    /// containerd's CNI bin_dir and conf_dir.
    pub fn cni_dirs(&self) -> (PathBuf, PathBuf) {
        (self.dir.path().join("cni-bin"), self.dir.path().join("net.d"))
    }

    /// Every CNI call containerd made to nearhost: (verb, CNI_NETNS, CNI_ARGS).
    pub fn cni_calls(&self) -> Vec<(String, String, String)> {
        let text =
            std::fs::read_to_string(self.dir.path().join("cni-calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '|');
                Some((f.next()?.to_string(), f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// RunPodSandbox, as the kubelet sends it: metadata, hostname, DNS, port
    /// mappings. The pod sandbox ID.
    pub fn run_pod(&mut self, name: &str, ports: &[(i32, i32)]) -> Result<String, tonic::Status> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir.path().join("pod-logs").join(name).display().to_string(),
            dns_config: Some(DnsConfig {
                servers: vec!["198.18.0.53".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: ports
                .iter()
                .map(|&(host_port, container_port)| PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port,
                    host_port,
                    host_ip: String::new(),
                })
                .collect(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let client = &mut self.client;
        let r = self.rt.block_on(client.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        }))?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    /// PodSandboxStatus (verbose): the pod's IPs as containerd reports them,
    /// its sandbox process, and the path of its network namespace.
    pub fn pod_status(&mut self, id: &str) -> (Vec<String>, u32, String) {
        let client = &mut self.client;
        let r = self
            .rt
            .block_on(client.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            }))
            .expect("PodSandboxStatus")
            .into_inner();
        let net = r.status.and_then(|s| s.network).unwrap_or_default();
        let mut ips = vec![net.ip];
        ips.extend(net.additional_ips.into_iter().map(|p| p.ip));
        let info: Value =
            serde_json::from_str(r.info.get("info").map(String::as_str).unwrap_or("{}"))
                .unwrap_or_default();
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network");
        let netns = netns.and_then(|n| n["path"].as_str()).unwrap_or_default().to_string();
        (ips, info["pid"].as_u64().unwrap_or(0) as u32, netns)
    }

    pub fn stop_pod(&mut self, id: &str) {
        let client = &mut self.client;
        self.rt
            .block_on(client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }))
            .expect("StopPodSandbox");
    }

    pub fn remove_pod(&mut self, id: &str) {
        let client = &mut self.client;
        self.rt
            .block_on(
                client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }),
            )
            .expect("RemovePodSandbox");
    }

    /// Every pod sandbox containerd knows.
    pub fn pods(&mut self) -> Vec<String> {
        let client = &mut self.client;
        let r = self
            .rt
            .block_on(client.list_pod_sandbox(ListPodSandboxRequest { filter: None }))
            .expect("ListPodSandbox");
        r.into_inner().items.into_iter().map(|p| p.id).collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Pods a failed test left: stop and remove them (CNI DEL) while the
        // host namespace is still there.
        for id in self.pods() {
            let client = &mut self.client;
            let _ = self.rt.block_on(
                client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }),
            );
            let client = &mut self.client;
            let _ = self.rt.block_on(
                client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
            );
        }
        terminate(&mut self.child, Duration::from_secs(20));
        // Shims outlive containerd by design; theirs end with their pods.
        unmount_under(self.dir.path());
    }
}
