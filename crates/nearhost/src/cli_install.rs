//! `nearhost install-cni`: puts the plugin where a runtime looks for it and
//! a network list where it reads its configs (a DaemonSet's init container, a
//! node's provisioning). Checked before anything is written; every file is
//! replaced atomically (temp file, fsync, rename), so a runtime never runs a
//! half-copied plugin or reads a half-written list; unchanged files are left
//! alone, so it is safe to run again and again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct InstallCniArgs {
    /// A directory the runtime finds CNI plugins in (its bin_dir); nearhost
    /// copies itself there as `nearhost`. Repeat for several.
    #[arg(long = "bin-dir", default_value = "/opt/cni/bin")]
    bin_dirs: Vec<PathBuf>,
    /// The runtime's CNI config directory (its conf_dir), for --conflist.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// A CNI network list to check and install into --conf-dir. Without it
    /// only the plugin is installed.
    #[arg(long)]
    conflist: Option<PathBuf>,
    /// Its file name in --conf-dir (default: the name of --conflist). Runtimes
    /// read the first file by name: a low number (10-…) puts it first.
    #[arg(long)]
    conf_name: Option<String>,
    /// Report what was done as JSON.
    #[arg(long)]
    json: bool,
}

/// Checks a network list (or a single network config) as a runtime would hand
/// each plugin its config: `cniVersion` and `name` from the list, then every
/// `nearhost` plugin's options as ADD checks them.
pub fn check_conflist(bytes: &[u8]) -> anyhow::Result<()> {
    let list: Value = serde_json::from_slice(bytes).context("not valid JSON")?;
    let Value::Object(obj) = &list else { bail!("not a JSON object") };
    let plugins: Vec<Value> = match obj.get("plugins") {
        Some(Value::Array(p)) if !p.is_empty() => p.clone(),
        Some(Value::Array(_)) => bail!("plugins: the list is empty"),
        Some(v) => bail!("plugins: expected a list of plugin configs, got {v}"),
        // A single network config (.conf): the plugin is the object itself.
        None => vec![list.clone()],
    };
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(v) => bail!("name: expected a non-empty string, got {v}"),
        None => bail!("name: is required"),
    };
    let version = match obj.get("cniVersion") {
        Some(Value::String(s)) => s,
        Some(v) => bail!("cniVersion: expected a string, got {v}"),
        None => bail!("cniVersion: is required"),
    };
    let mut ours = 0;
    for (i, plugin) in plugins.iter().enumerate() {
        let Value::Object(p) = plugin else { bail!("plugins[{i}]: not a JSON object") };
        match p.get("type") {
            Some(Value::String(t)) if t == "nearhost" => {
                let mut conf = p.clone();
                conf.insert("cniVersion".into(), json!(version));
                conf.insert("name".into(), json!(name));
                let bytes = serde_json::to_vec(&conf).expect("a JSON object encodes");
                nearhost_cni::plugin::validate(&bytes)
                    .map_err(|e| anyhow::anyhow!("plugins[{i}] (nearhost): {}", e.msg))?;
                ours += 1;
            }
            Some(Value::String(t)) if !t.is_empty() && !t.contains('/') => {}
            Some(v) => bail!("plugins[{i}].type: {v} is not a plugin name"),
            None => bail!("plugins[{i}].type: is required"),
        }
    }
    if ours == 0 {
        bail!("no plugin of type \"nearhost\" in it");
    }
    Ok(())
}

/// What happened to one file.
fn record(path: &Path, changed: bool) -> Value {
    json!({"path": path, "action": if changed { "installed" } else { "unchanged" }})
}

/// Replaces `path` with `bytes` (mode `mode`) unless it already holds them.
/// Temp files an interrupted earlier run left beside it are removed first.
fn install_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    nearhost_state::remove_stale_temps(path)?;
    let same = std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_file() && m.permissions().mode() & 0o7777 == mode)
        && std::fs::read(path).is_ok_and(|old| old == bytes);
    if same {
        return Ok(false);
    }
    nearhost_state::write_atomic(path, bytes, mode)?;
    // write_atomic's mode goes through the umask: make it exact.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(true)
}

pub fn run(a: InstallCniArgs) -> anyhow::Result<()> {
    // Everything is checked before the first file is written.
    let conf = match &a.conflist {
        Some(file) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("--conflist {}", file.display()))?;
            check_conflist(&bytes).with_context(|| format!("--conflist {}", file.display()))?;
            let name = match &a.conf_name {
                Some(n) => n.clone(),
                None => file
                    .file_name()
                    .context("--conflist names no file")?
                    .to_string_lossy()
                    .into_owned(),
            };
            let ext_ok = [".conflist", ".conf", ".json"].iter().any(|e| name.ends_with(e));
            if name.contains('/') || name.starts_with('.') || !ext_ok {
                bail!("--conf-name: {name:?} is not a file name a runtime loads (NAME.conflist, .conf or .json)");
            }
            Some((a.conf_dir.join(name), bytes))
        }
        None if a.conf_name.is_some() => bail!("--conf-name needs --conflist"),
        None => None,
    };
    for dir in a.bin_dirs.iter().chain(conf.iter().map(|_| &a.conf_dir)) {
        if !dir.is_dir() {
            bail!("{}: no such directory (the runtime's CNI directory must exist)", dir.display());
        }
    }
    let exe = nearhost_kernel::process::own_executable().context("read this binary")?;
    let mut done = Vec::new();
    for dir in &a.bin_dirs {
        let path = dir.join("nearhost");
        let changed = install_file(&path, &exe, 0o755)
            .with_context(|| format!("install {}", path.display()))?;
        done.push(record(&path, changed));
    }
    if let Some((path, bytes)) = conf {
        let changed = install_file(&path, &bytes, 0o644)
            .with_context(|| format!("install {}", path.display()))?;
        done.push(record(&path, changed));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for d in &done {
            println!("{} {}", d["action"].as_str().unwrap_or(""), d["path"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_conflist;

    #[test]
    fn a_network_list_is_checked_as_the_runtime_would_hand_it_out() {
        let good = br#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
            {"type": "nearhost", "datapath": "bridge", "bridge": "nh0",
             "ipam": {"type": "nearhost", "ranges": [[{"subnet": "198.18.0.0/24"}]]}},
            {"type": "bandwidth"}]}"#;
        check_conflist(good).unwrap();
        let single = br#"{"cniVersion": "1.0.0", "name": "pods", "type": "nearhost",
            "datapath": "macvlan", "master": "eth0", "ipam": {"type": "host-local"}}"#;
        check_conflist(single).unwrap();
        for (conf, says) in [
            (&b"{"[..], "not valid JSON"),
            (br#"{"name": "a", "plugins": [{"type": "nearhost"}]}"#, "cniVersion: is required"),
            (br#"{"cniVersion": "1.0.0", "plugins": []}"#, "plugins: the list is empty"),
            (br#"{"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "bridge"}]}"#, "no plugin of type"),
            (br#"{"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "../x"}]}"#, "plugins[0].type"),
            (
                br#"{"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "nearhost", "datapath": "warp"}]}"#,
                "plugins[0] (nearhost): datapath",
            ),
            (
                br#"{"cniVersion": "9.9.9", "name": "a", "plugins": [{"type": "nearhost", "datapath": "bridge"}]}"#,
                "9.9.9",
            ),
        ] {
            let e = format!("{:#}", check_conflist(conf).unwrap_err());
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(conf));
        }
    }
}
