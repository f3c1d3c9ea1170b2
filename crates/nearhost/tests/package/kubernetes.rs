//! The Kubernetes manifests (deploy/kubernetes) and the Grafana dashboard
//! (deploy/grafana). No cluster runs here, so what can be proven without one
//! is proven for real:
//! - every object is valid for the Kubernetes API of the pinned versions, in
//!   strict mode (unknown fields are errors), by kubernetes-validate, which
//!   bundles the API's schemas (scripts/setup.sh installs it, pinned);
//! - the init container's `install-cni`, run with the manifest's own arguments
//!   and the ConfigMap's own network list, installs the binary under test and
//!   that list where the node's runtime looks;
//! - the agent container passes only flags and variables the binary reads, and
//!   the pieces that must agree (paths, pool, mode, ports, Secret files) do;
//! - the dashboard queries the Prometheus chosen when it is imported.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nearhost_testkit::bin;
use serde_json::Value;

use crate::repo;

/// The virtual environment scripts/setup.sh installs kubernetes-validate into.
const VENV: &str = "/opt/nearhost/kubernetes-validate";

/// The Kubernetes versions every manifest must be valid for: the oldest minor
/// the manifests claim, and the newest the pinned validator bundles.
const KUBERNETES: [&str; 2] = ["1.31", "1.37"];

/// PyYAML (a dependency of the validator, in its venv) reads the manifests as
/// Kubernetes does (YAML 1.1) and hands them over as JSON.
const YAML_TO_JSON: &str =
    "import sys, yaml, json; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)";

/// The version scripts/setup.sh pins (`KUBERNETES_VALIDATE=kubernetes-validate==X`).
fn pinned_validator() -> String {
    let setup = repo().join("scripts/setup.sh");
    let text = std::fs::read_to_string(&setup).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VALIDATE=kubernetes-validate=="))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{} pins no kubernetes-validate version", setup.display()))
}

/// The validator, checked to be the pinned version. Missing is a failure,
/// never a skip: the manifests would go unchecked.
fn validator() -> String {
    let path = format!("{VENV}/bin/kubernetes-validate");
    let pin = pinned_validator();
    let how = format!("scripts/setup.sh installs kubernetes-validate {pin} there (run it as root)");
    let o = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {path}: {e}; {how}"));
    assert!(
        o.status.success(),
        "{path} --version failed ({}): {}; {how}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let have = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(have, pin, "{path} is kubernetes-validate {have}, not the pinned one; {how}");
    path
}

/// Runs the validator in strict mode for every version of [`KUBERNETES`]:
/// whether it succeeded, and everything it said.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new(validator());
    cmd.arg("--strict");
    for k in KUBERNETES {
        cmd.args(["--kubernetes-version", k]);
    }
    let o = cmd.args(files).output().expect("run kubernetes-validate");
    let said =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), said)
}

/// deploy/kubernetes/*.yaml, sorted.
fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.contains(&all_in_one()), "no nearhost.yaml in {}", dir.display());
    files
}

fn all_in_one() -> PathBuf {
    repo().join("deploy/kubernetes/nearhost.yaml")
}

/// The objects of a YAML file (empty documents left out).
fn documents(file: &Path) -> Vec<Value> {
    let python = format!("{VENV}/bin/python");
    let o =
        Command::new(&python).args(["-c", YAML_TO_JSON]).arg(file).output().unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}; scripts/setup.sh installs it (the validator's venv)")
        });
    assert!(
        o.status.success(),
        "{} does not read as YAML: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&o.stdout).expect("PyYAML's JSON");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind_name(d: &Value) -> String {
    format!(
        "{}/{}",
        d["kind"].as_str().unwrap_or("?"),
        d["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifest"))
}

/// The DaemonSet's pod spec.
fn pod(docs: &[Value]) -> &Value {
    &object(docs, "DaemonSet", "nearhost")["spec"]["template"]["spec"]
}

/// A container of the pod by name; `list` is `containers` or `initContainers`.
fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("the pod has no {list} entry named {name}"))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("the pod has no volume named {name}"))
}

/// The volume mount of container `c` that `path` lies in, with its volume.
fn mount_of<'a>(pod: &'a Value, c: &'a Value, path: &str) -> Option<(&'a Value, &'a Value)> {
    c["volumeMounts"].as_array()?.iter().find_map(|m| {
        let at = m["mountPath"].as_str()?;
        Path::new(path).starts_with(at).then(|| (m, volume(pod, m["name"].as_str().unwrap())))
    })
}

/// A list of strings (command, args); absent is empty.
fn strings(v: &Value) -> Vec<String> {
    let Some(items) = v.as_array() else { return Vec::new() };
    items
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_string())
        .collect()
}

/// The value after `flag` (`--flag value`) or in `--flag=value`.
fn flag_value<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let prefix = format!("{flag}=");
    argv.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix(&prefix) {
            Some(v) => Some(v),
            None if a == flag => argv.get(i + 1).map(String::as_str),
            None => None,
        })
        .unwrap_or_else(|| panic!("no {flag} in {argv:?}"))
}

/// The keys a Secret holds (data and stringData) or a ConfigMap (data).
fn keys(obj: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .filter_map(|f| obj[*f].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// The network list the ConfigMap ships.
fn conflist(docs: &[Value]) -> Value {
    let text = object(docs, "ConfigMap", "nearhost-config")["data"]["10-nearhost.conflist"]
        .as_str()
        .expect("ConfigMap nearhost-config has a 10-nearhost.conflist");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("the ConfigMap's list is not JSON: {e}"))
}

/// The list's `nearhost` plugins.
fn nearhost_plugins(list: &Value) -> Vec<&Value> {
    let plugins: Vec<&Value> = list["plugins"]
        .as_array()
        .map(|ps| ps.iter().filter(|p| p["type"].as_str() == Some("nearhost")).collect())
        .unwrap_or_default();
    assert!(!plugins.is_empty(), "no nearhost plugin in the ConfigMap's list: {list}");
    plugins
}

/// Whether `word` occurs in `text` on its own (not inside a longer flag or
/// variable name: `--pool` is not `--pools`, `NEARHOST_LOG` not `NEARHOST_LOG_FORMAT`).
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(part)
            && !text[i + word.len()..].chars().next().is_some_and(part)
    })
}

/// The `$(NAME)` references Kubernetes expands in `args`.
fn expansions(args: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for a in args {
        let mut rest = a.as_str();
        while let Some(start) = rest.find("$(") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or_else(|| panic!("unclosed $( in {a:?}"));
            names.insert(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    names
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    let files = manifests();
    let (ok, said) = validate(&files);
    assert!(ok, "kubernetes-validate --strict refused a manifest:\n{said}");
    // A kind or apiVersion it has no schema for is only a warning (exit 0):
    // every object must have passed, for every version.
    assert!(!said.contains("WARN"), "kubernetes-validate could not check everything:\n{said}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{}: no objects", file.display());
        for d in &docs {
            let kn = kind_name(d).to_lowercase();
            for k in KUBERNETES {
                let line =
                    format!("INFO {} passed for resource {kn} against version {k}", file.display());
                assert!(said.lines().any(|l| l == line), "no {line:?} in:\n{said}");
            }
        }
    }

    let docs = documents(&all_in_one());
    let have: BTreeSet<String> = docs.iter().map(kind_name).collect();
    for want in [
        "Namespace/nearhost-system", "ServiceAccount/nearhost", "ConfigMap/nearhost-config",
        "Secret/nearhost-etcd", "DaemonSet/nearhost",
    ] {
        assert!(have.contains(want), "nearhost.yaml has no {want}: {have:?}");
    }
    for d in docs.iter().filter(|d| d["kind"].as_str() != Some("Namespace")) {
        assert_eq!(
            d["metadata"]["namespace"].as_str(),
            Some("nearhost-system"),
            "{} is not in namespace nearhost-system",
            kind_name(d)
        );
    }
}

/// The check above can fail: one misspelled field, one value of the wrong
/// type, each in a copy of the DaemonSet, are refused and named.
#[test]
fn the_validator_refuses_a_broken_daemonset() {
    let docs = documents(&all_in_one());
    let ds = object(&docs, "DaemonSet", "nearhost").clone();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: &Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p
    };
    // The copy as written (JSON is YAML) passes: what fails below is the change.
    let (ok, said) = validate(&[write("as-is.yaml", &ds)]);
    assert!(ok && said.contains("passed for resource daemonset/nearhost"), "{said}");

    let mut misspelled = ds.clone();
    let spec = misspelled["spec"]["template"]["spec"].as_object_mut().expect("a pod spec");
    let v = spec.remove("hostNetwork").expect("the DaemonSet sets hostNetwork");
    spec.insert("hostNetwrok".to_string(), v);
    let (ok, said) = validate(&[write("misspelled.yaml", &misspelled)]);
    assert!(!ok, "a misspelled field passed:\n{said}");
    assert!(said.contains("'hostNetwrok' was unexpected"), "the field is not named:\n{said}");

    let mut wrong_type = ds;
    let i = wrong_type["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().position(|c| c["name"].as_str() == Some("agent")))
        .expect("an agent container");
    let port =
        &mut wrong_type["spec"]["template"]["spec"]["containers"][i]["ports"][0]["containerPort"];
    assert!(port.is_u64(), "the agent's first port is a number: {port}");
    *port = Value::String(port.to_string());
    let (ok, said) = validate(&[write("wrong-type.yaml", &wrong_type)]);
    assert!(!ok, "a port given as a string passed:\n{said}");
    assert!(
        said.contains("containerPort: '9464' is not of type 'integer'"),
        "the field is not named:\n{said}"
    );
}

/// The init container's own command, with the paths of the pod mapped into a
/// temporary directory laid out as the pod sees it (host directories and the
/// ConfigMap's list at their mount paths), run twice as a restarted pod would.
#[test]
fn the_daemonset_installs_the_plugin_and_conflist_it_ships() {
    let docs = documents(&all_in_one());
    let pod = pod(&docs);
    let init = container(pod, "initContainers", "install-cni");
    let mut argv = strings(&init["command"]);
    argv.extend(strings(&init["args"]));
    assert!(argv.len() > 2 && argv[0] == "nearhost" && argv[1] == "install-cni", "{argv:?}");

    let root = tempfile::tempdir().unwrap();
    let inside = |p: &str| root.path().join(p.trim_start_matches('/'));
    // The pod's view: every volume at its mount path; the kubelet makes the
    // host directories (DirectoryOrCreate) and writes the ConfigMap's keys.
    for m in init["volumeMounts"].as_array().expect("install-cni mounts volumes") {
        let at = inside(m["mountPath"].as_str().unwrap());
        std::fs::create_dir_all(&at).unwrap();
        let vol = volume(pod, m["name"].as_str().unwrap());
        if let Some(name) = vol["configMap"]["name"].as_str() {
            let data = &object(&docs, "ConfigMap", name)["data"];
            let items: Vec<(String, String)> = match vol["configMap"]["items"].as_array() {
                Some(items) => items
                    .iter()
                    .map(|it| {
                        (it["key"].as_str().unwrap().into(), it["path"].as_str().unwrap().into())
                    })
                    .collect(),
                None => keys(object(&docs, "ConfigMap", name))
                    .into_iter()
                    .map(|k| (k.clone(), k))
                    .collect(),
            };
            for (key, path) in items {
                let text = data[key.as_str()]
                    .as_str()
                    .unwrap_or_else(|| panic!("ConfigMap {name} has no key {key}"));
                std::fs::write(at.join(path), text).unwrap();
            }
        }
    }
    // Every path it is given is in one of its volumes (its root is read-only),
    // and the directories are the node's, where runtimes look.
    for a in argv.iter().filter(|a| a.starts_with('/')) {
        assert!(mount_of(pod, init, a).is_some(), "{a} is in no volume of install-cni");
    }
    for (flag, host) in [("--bin-dir", "/opt/cni/bin"), ("--conf-dir", "/etc/cni/net.d")] {
        let dir = flag_value(&argv, flag);
        let (m, vol) = mount_of(pod, init, dir).unwrap();
        assert_eq!(m["mountPath"].as_str(), Some(dir), "{flag} {dir} is a whole volume");
        assert_eq!(
            vol["hostPath"]["path"].as_str(),
            Some(host),
            "{flag} {dir} is the node's {host}"
        );
    }

    let bin_dir = inside(flag_value(&argv, "--bin-dir"));
    let conf_dir = inside(flag_value(&argv, "--conf-dir"));
    // The node already has other plugins and an older nearhost.
    std::fs::write(bin_dir.join("loopback"), b"another plugin").unwrap();
    std::fs::write(bin_dir.join("nearhost"), b"#!/bin/sh\necho an older nearhost\n").unwrap();
    let mapped: Vec<String> = argv[1..]
        .iter()
        .map(|a| if a.starts_with('/') { inside(a).display().to_string() } else { a.clone() })
        .collect();
    let install = || {
        let o = Command::new(bin()).args(&mapped).output().expect("run nearhost install-cni");
        assert!(
            o.status.success(),
            "nearhost {mapped:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };

    let plugin = bin_dir.join("nearhost");
    let list = conf_dir.join("10-nearhost.conflist");
    let me = std::fs::read(bin()).unwrap();
    let check = || {
        assert!(
            std::fs::read(&plugin).unwrap() == me,
            "{} is not the binary under test",
            plugin.display()
        );
        let mode = std::fs::metadata(&plugin).unwrap().permissions().mode();
        assert!(
            mode & 0o111 == 0o111 && mode & 0o022 == 0,
            "{} has mode {mode:o}",
            plugin.display()
        );
        let installed: Value = serde_json::from_slice(
            &std::fs::read(&list).unwrap_or_else(|e| panic!("{}: {e}", list.display())),
        )
        .expect("the installed list is JSON");
        assert_eq!(installed, conflist(&docs), "the installed list is not the ConfigMap's");
        assert_eq!(names_in(&bin_dir), ["loopback", "nearhost"], "only the plugin, no temp file");
        assert_eq!(names_in(&conf_dir), ["10-nearhost.conflist"], "only the list, no temp file");
        assert_eq!(std::fs::read(bin_dir.join("loopback")).unwrap(), b"another plugin");
    };
    install();
    check();
    let inodes = || [&plugin, &list].map(|p| std::fs::metadata(p).unwrap().ino());
    let first = inodes();
    install();
    check();
    assert_eq!(inodes(), first, "a rerun replaced files that had not changed");
}

/// Every flag of the agent container is one `nearhost agent` has, every
/// `$(VAR)` is defined, and every NEARHOST_ variable is one the binary reads.
#[test]
fn the_agent_container_passes_only_flags_and_variables_the_binary_reads() {
    let docs = documents(&all_in_one());
    let agent = container(pod(&docs), "containers", "agent");
    assert_eq!(strings(&agent["command"]), ["nearhost", "agent"]);
    let args = strings(&agent["args"]);
    assert!(!args.is_empty(), "the agent container has no args");

    let o =
        Command::new(bin()).args(["agent", "--help"]).output().expect("run nearhost agent --help");
    assert!(o.status.success(), "nearhost agent --help: {}", String::from_utf8_lossy(&o.stderr));
    let raw = String::from_utf8_lossy(&o.stdout).into_owned();
    // Help is wrapped to a width: a line break counts as a space.
    let help = raw.split_whitespace().collect::<Vec<_>>().join(" ");

    for a in &args {
        let flag = a.split('=').next().unwrap_or_default();
        assert!(flag.starts_with("--") && flag.len() > 2, "agent arg {a:?} is not --flag=value");
        assert!(
            has_word(&help, flag),
            "`nearhost agent` has no {flag} (arg {a:?}); its help:\n{raw}"
        );
    }

    let env = agent["env"].as_array().expect("the agent container has env");
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let expanded = expansions(&args);
    for v in &expanded {
        assert!(
            names.contains(&v.as_str()),
            "$({v}) in the agent's args is not in its env (Kubernetes would pass it literally)"
        );
    }
    for name in names.iter().filter(|n| n.starts_with("NEARHOST_")) {
        let by_clap =
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"));
        let read = by_clap
            // Only there to fill in a flag's value.
            || expanded.contains(*name)
            // The log level: read by the logging setup, not a flag; its help names it.
            || (*name == "NEARHOST_LOG" && has_word(&help, name));
        assert!(
            read,
            "the agent container sets {name}, which `nearhost agent` does not read:\n{raw}"
        );
    }
}

/// The pieces that must agree: the agent and the plugin on the node name the
/// same state directory (the socket between them is there), the list's pool
/// and datapath match the agent's pools and mode, the ConfigMap and Secret
/// keys the pod refers to exist, and the metrics port is the one the probes
/// and the Prometheus annotations name.
#[test]
fn the_agent_the_plugin_and_the_pod_agree_on_paths_pool_mode_and_port() {
    let docs = documents(&all_in_one());
    let pod = pod(&docs);
    let agent = container(pod, "containers", "agent");
    let args = strings(&agent["args"]);
    let config = object(&docs, "ConfigMap", "nearhost-config");
    let list = conflist(&docs);
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "the agent needs the node's network");

    // --data-dir: the node's directory at the same path, and the list's dataDir.
    let data_dir = flag_value(&args, "--data-dir");
    let (m, vol) = mount_of(pod, agent, data_dir).expect("--data-dir is in a volume");
    assert_eq!(m["mountPath"].as_str(), Some(data_dir));
    assert_ne!(m["readOnly"].as_bool(), Some(true), "{data_dir} must be writable");
    assert_eq!(vol["hostPath"]["path"].as_str(), Some(data_dir), "the node's own {data_dir}");
    for p in nearhost_plugins(&list) {
        assert_eq!(p["ipam"]["dataDir"].as_str(), Some(data_dir), "the list's ipam.dataDir");
    }

    // The mode the agent gets is the list's datapath; the list's pool is claimed at start.
    let mode = config["data"]["mode"].as_str().expect("ConfigMap key mode");
    assert!(["routed", "vxlan"].contains(&mode), "mode {mode:?}");
    assert!(args.iter().any(|a| a == "--mode=$(NEARHOST_MODE)"), "--mode comes from the ConfigMap");
    let pools: Vec<&str> = config["data"]["pools"]
        .as_str()
        .expect("ConfigMap key pools")
        .split(',')
        .map(str::trim)
        .collect();
    for p in nearhost_plugins(&list) {
        assert_eq!(p["datapath"].as_str(), Some(mode), "the list's datapath is the agent's mode");
        let pool = p["ipam"]["pool"].as_str().expect("the list takes addresses from a pool");
        assert!(pools.contains(&pool), "pool {pool} is not among the agent's pools {pools:?}");
    }

    // Every key the env refers to exists; file paths are keys of their Secret.
    for e in agent["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        for (kind, r) in [("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")] {
            let r = &e["valueFrom"][r];
            let Some(obj) = r["name"].as_str() else { continue };
            let key = r["key"].as_str().unwrap();
            if r["optional"].as_bool() != Some(true) {
                assert!(
                    keys(object(&docs, kind, obj)).contains(key),
                    "{name}: {kind} {obj} has no {key}"
                );
            }
        }
        let Some(path) = e["value"].as_str().filter(|v| v.starts_with('/')) else { continue };
        let (m, vol) =
            mount_of(pod, agent, path).unwrap_or_else(|| panic!("{name}={path} is in no volume"));
        if let Some(secret) = vol["secret"]["secretName"].as_str() {
            let at = m["mountPath"].as_str().unwrap();
            let file = Path::new(path).strip_prefix(at).unwrap().to_string_lossy().into_owned();
            assert!(
                keys(object(&docs, "Secret", secret)).contains(&file),
                "{name}={path}: Secret {secret} has no key {file}"
            );
            assert_eq!(m["readOnly"].as_bool(), Some(true), "the Secret is mounted read-only");
        }
    }

    // One metrics port: the listener, the named port, the probes, the annotations.
    let listen = flag_value(&args, "--metrics-listen");
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let named = agent["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"].as_str() == Some("metrics")))
        .expect("a port named metrics");
    assert_eq!(named["containerPort"].as_u64(), Some(port), "--metrics-listen {listen}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &agent[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert!(
            get["port"].as_str() == Some("metrics") || get["port"].as_u64() == Some(port),
            "{probe} port {}",
            get["port"]
        );
    }
    let notes =
        &object(&docs, "DaemonSet", "nearhost")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(notes["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(notes["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    assert_eq!(notes["prometheus.io/path"].as_str(), Some("/metrics"));
}

/// The dashboard imports with the Prometheus of the user's choice: an input
/// for it, a `datasource` variable every panel and query goes through, a query
/// in every panel. (Which series it may name, a running agent's, is checked by
/// the agent suite: tests/agent/packaged.rs.)
#[test]
fn the_grafana_dashboard_queries_the_data_source_chosen_at_import() {
    let path = repo().join("deploy/grafana/nearhost-agent.json");
    let dash: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    assert_eq!(dash["schemaVersion"].as_u64(), Some(39));
    let input = &dash["__inputs"][0];
    assert_eq!(input["name"].as_str(), Some("DS_PROMETHEUS"));
    assert_eq!(input["pluginId"].as_str(), Some("prometheus"));
    let vars = dash["templating"]["list"].as_array().expect("template variables");
    let ds = vars
        .iter()
        .find(|v| v["name"].as_str() == Some("datasource"))
        .expect("a datasource variable");
    assert_eq!(ds["type"].as_str(), Some("datasource"));
    assert_eq!(ds["query"].as_str(), Some("prometheus"));
    assert_eq!(ds["current"]["value"].as_str(), Some("${DS_PROMETHEUS}"), "the imported choice");
    for v in vars.iter().filter(|v| v["type"].as_str() == Some("query")) {
        assert_eq!(
            v["datasource"]["uid"].as_str(),
            Some("${datasource}"),
            "variable {}",
            v["name"]
        );
    }
    let panels = dash["panels"].as_array().expect("panels");
    let mut queries = 0;
    for p in panels.iter().filter(|p| p["type"].as_str() != Some("row")) {
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {} has no query", p["title"]));
        for t in targets.iter().chain([p]) {
            assert_eq!(t["datasource"]["uid"].as_str(), Some("${datasource}"), "in {}", p["title"]);
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            // An agent's series, on the nodes the `node` variable selects.
            assert!(
                expr.contains("nearhost_agent_") && expr.contains(r#"instance=~"$node""#),
                "panel {}: query {expr:?}",
                p["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
}
