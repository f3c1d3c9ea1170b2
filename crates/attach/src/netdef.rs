//! Network definitions: CNI config files (`.conf`, `.conflist`, `.json`) in one
//! directory, so that the same file serves `nearhost attach` and CNI runtimes.
//! A definition is valid when every `nearhost` plugin in it passes the very
//! parsers the plugin runs on ADD.

use std::path::{Path, PathBuf};

use nearhost_cni::ipam::Addressing;
use nearhost_cni::netconf::NetConf;
use nearhost_cni::CniError;
use serde_json::{json, Value};

use crate::error::{AttachError, Result};

pub const DEFAULT_NET_DIR: &str = "/etc/nearhost/net.d";
pub const NET_DIR_ENV: &str = "NEARHOST_NET_DIR";
/// The plugin type that runs in-process.
pub const NEARHOST_TYPE: &str = "nearhost";

const EXTENSIONS: &[&str] = &["conf", "conflist", "json"];

/// One network: its plugin chain, each plugin's config as a runtime hands it
/// over (the list's `name` and `cniVersion` injected, as libcni does).
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub file: PathBuf,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// The file's JSON as written.
    pub raw: Value,
}

impl Network {
    /// Reads the structure of a `.conf` (one plugin) or `.conflist` (`plugins`).
    pub fn from_json(file: &Path, raw: &Value) -> std::result::Result<Network, String> {
        let obj = raw.as_object().ok_or("the file must hold a JSON object")?;
        let text = |key: &str| -> std::result::Result<String, String> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(v) if !v.is_string() => Err(format!("{key}: expected a string, got {v}")),
                _ => Err(format!("{key}: is required")),
            }
        };
        let name = text("name")?;
        valid_network_name(&name).map_err(|r| format!("name: {name:?} {r}"))?;
        let cni_version = text("cniVersion")?;
        let plugins: Vec<Value> = match obj.get("plugins") {
            None => vec![raw.clone()],
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(v) => {
                return Err(format!(
                    "plugins: expected a non-empty list of plugin configs, got {v}"
                ))
            }
        };
        let mut out = Vec::with_capacity(plugins.len());
        for (i, mut p) in plugins.into_iter().enumerate() {
            let field = if obj.contains_key("plugins") {
                format!("plugins[{i}]")
            } else {
                "(config)".into()
            };
            let Some(po) = p.as_object_mut() else {
                return Err(format!("{field}: expected an object"));
            };
            match po.get("type") {
                Some(Value::String(t)) if !t.is_empty() && !t.contains('/') => {}
                other => {
                    return Err(format!(
                        "{field}.type: expected a plugin name, got {}",
                        other.unwrap_or(&Value::Null)
                    ))
                }
            }
            po.insert("name".into(), json!(name));
            po.insert("cniVersion".into(), json!(cni_version));
            out.push(p);
        }
        Ok(Network { name, file: file.to_path_buf(), cni_version, plugins: out, raw: raw.clone() })
    }

    /// Runs every `nearhost` plugin config through the plugin's own parsers:
    /// the CNI fields, the datapath driver's options, the IPAM section.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (i, p) in self.plugins.iter().enumerate() {
            if plugin_type(p) != NEARHOST_TYPE {
                continue;
            }
            validate_nearhost_plugin(p).map_err(|e| {
                if self.plugins.len() > 1 {
                    format!("plugins[{i}]: {}", e.msg)
                } else {
                    e.msg
                }
            })?;
        }
        Ok(())
    }

    /// The `datapath` of the first nearhost plugin, or the first plugin's type.
    pub fn datapath(&self) -> String {
        let nearhost = self.plugins.iter().find(|p| plugin_type(p) == NEARHOST_TYPE);
        match nearhost.and_then(|p| p.get("datapath")).and_then(Value::as_str) {
            Some(d) => d.to_string(),
            None => self.plugins.first().map(plugin_type).unwrap_or_default().to_string(),
        }
    }

    /// The subnets of the plugins' `ipam.ranges`.
    pub fn subnets(&self) -> Vec<String> {
        let sets = self
            .plugins
            .iter()
            .filter_map(|p| p.pointer("/ipam/ranges"))
            .filter_map(Value::as_array)
            .flatten();
        sets.filter_map(Value::as_array)
            .flatten()
            .filter_map(|r| r.get("subnet")?.as_str().map(str::to_string))
            .collect()
    }
}

pub fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn validate_nearhost_plugin(plugin: &Value) -> std::result::Result<(), CniError> {
    let bytes = serde_json::to_vec(plugin).expect("JSON values serialize");
    let conf = NetConf::parse(&bytes)?;
    nearhost_datapath::build(&conf.raw)?;
    Addressing::from_conf(&conf)?;
    Ok(())
}

/// Network names become file and directory names (IPAM state, records).
pub fn valid_network_name(name: &str) -> std::result::Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err("is not a valid network name (letters, digits, '-', '_', '.'; at most 128)")
    }
}

/// One file of the directory, parsed and validated (or why not).
#[derive(Debug)]
pub struct Entry {
    pub file: PathBuf,
    pub network: std::result::Result<Network, String>,
}

/// The directory of network definitions.
#[derive(Debug, Clone)]
pub struct NetDir {
    pub path: PathBuf,
}

impl NetDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        NetDir { path: path.into() }
    }

    /// Every definition file, sorted by file name (the order libcni uses).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let read = match std::fs::read_dir(&self.path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(AttachError::NetDir { dir: self.path.clone(), source }),
        };
        let mut files: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTENSIONS.contains(&x))
            })
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        Ok(files.into_iter().map(|file| Entry { network: load_file(&file), file }).collect())
    }

    /// The valid definition of network `name`.
    pub fn find(&self, name: &str) -> Result<Network> {
        let entries = self.list()?;
        let mut matches: Vec<&Entry> = entries.iter().filter(|e| entry_names(e, name)).collect();
        match matches.len() {
            0 => Err(AttachError::NetworkNotFound {
                name: name.to_string(),
                dir: self.path.clone(),
                known: entries
                    .iter()
                    .filter_map(|e| e.network.as_ref().ok().map(|n| n.name.clone()))
                    .collect(),
            }),
            1 => {
                let e = matches.remove(0);
                let net = e.network.clone().map_err(|reason| AttachError::NetworkInvalid {
                    file: e.file.clone(),
                    reason,
                })?;
                net.validate().map_err(|reason| AttachError::NetworkInvalid {
                    file: e.file.clone(),
                    reason,
                })?;
                Ok(net)
            }
            _ => Err(AttachError::NetworkDuplicate {
                name: name.to_string(),
                files: matches.iter().map(|e| e.file.clone()).collect(),
            }),
        }
    }

    /// Writes `config` (a network definition) as `NAME.conflist` after checking
    /// it parses and validates exactly as `find` will read it back.
    pub fn create(&self, config: &Value, force: bool) -> Result<PathBuf> {
        let name = config.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let file = self.path.join(format!("{name}.conflist"));
        let invalid = |reason| AttachError::InvalidSpec { name: name.clone(), reason };
        Network::from_json(&file, config).and_then(|net| net.validate()).map_err(invalid)?;
        let existing: Vec<PathBuf> =
            self.list()?.into_iter().filter(|e| entry_names(e, &name)).map(|e| e.file).collect();
        if let Some(other) = existing.iter().find(|f| **f != file) {
            return Err(AttachError::NetworkDuplicate { name, files: vec![other.clone(), file] });
        }
        if !existing.is_empty() && !force {
            return Err(AttachError::NetworkExists { name, file });
        }
        let mut bytes = serde_json::to_vec_pretty(config).expect("JSON values serialize");
        bytes.push(b'\n');
        // Definitions are configuration, readable by all like /etc/cni/net.d.
        nearhost_state::create_dir(&self.path, 0o755)?;
        nearhost_state::write_atomic(&file, &bytes, 0o644)?;
        Ok(file)
    }
}

/// Whether `e` defines `name`; an unparsable file counts when its stem is `name`
/// (so that `find` reports why the user's file is broken, not "not found").
fn entry_names(e: &Entry, name: &str) -> bool {
    match &e.network {
        Ok(n) => n.name == name,
        Err(_) => e.file.file_stem().is_some_and(|s| s == name),
    }
}

fn load_file(file: &Path) -> std::result::Result<Network, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read it: {e}"))?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    Network::from_json(file, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macvlan(name: &str, subnet: &str) -> Value {
        json!({"cniVersion": "1.1.0", "name": name, "plugins": [{"type": "nearhost", "datapath": "macvlan", "master": "eth0",
               "ipam": {"type": "nearhost", "ranges": [[{"subnet": subnet}]]}}]})
    }

    #[test]
    fn conf_and_conflist_both_load_with_name_and_version_injected() {
        let dir = tempfile::tempdir().unwrap();
        let d = NetDir::new(dir.path());
        std::fs::write(
            dir.path().join("10-a.conf"),
            json!({"cniVersion": "1.0.0", "name": "a", "type": "nearhost", "datapath": "bridge"})
                .to_string(),
        )
        .unwrap();
        d.create(&macvlan("b", "198.18.1.0/24"), false).unwrap();
        let a = d.find("a").unwrap();
        assert_eq!((a.plugins.len(), a.datapath().as_str()), (1, "bridge"));
        let b = d.find("b").unwrap();
        assert_eq!(b.plugins[0]["name"], "b");
        assert_eq!(b.plugins[0]["cniVersion"], "1.1.0");
        assert_eq!(b.subnets(), vec!["198.18.1.0/24"]);
        assert_eq!(d.list().unwrap().len(), 2);
    }

    #[test]
    fn missing_invalid_and_duplicate_definitions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = NetDir::new(dir.path());
        d.create(&macvlan("ok", "198.18.2.0/24"), false).unwrap();
        let e = d.find("nope").unwrap_err().to_string();
        assert!(
            e.contains("network \"nope\" is not defined") && e.contains("(defined: ok)"),
            "{e}"
        );
        std::fs::write(dir.path().join("broken.conf"), "{").unwrap();
        let e = d.find("broken").unwrap_err().to_string();
        assert!(e.contains("broken.conf is invalid: not valid JSON"), "{e}");
        let bad = json!({"cniVersion": "1.1.0", "name": "bad", "type": "nearhost", "datapath": "macvlan", "mode": "turbo"});
        std::fs::write(dir.path().join("bad.conf"), bad.to_string()).unwrap();
        let e = d.find("bad").unwrap_err().to_string();
        assert!(e.contains("mode: \"turbo\" is not one of"), "{e}");
        std::fs::write(dir.path().join("zz.conf"), macvlan("ok", "198.18.3.0/24").to_string())
            .unwrap();
        assert!(matches!(d.find("ok"), Err(AttachError::NetworkDuplicate { .. })));
    }

    #[test]
    fn create_refuses_invalid_and_existing_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let d = NetDir::new(dir.path().join("net.d"));
        let e = d.create(&macvlan("x", "198.18.0.0/40"), false).unwrap_err().to_string();
        assert!(e.contains("ipam.ranges[0][0].subnet"), "{e}");
        assert!(!d.path.join("x.conflist").exists(), "nothing is written for an invalid network");
        d.create(&macvlan("x", "198.18.4.0/24"), false).unwrap();
        assert!(matches!(
            d.create(&macvlan("x", "198.18.5.0/24"), false),
            Err(AttachError::NetworkExists { .. })
        ));
        d.create(&macvlan("x", "198.18.5.0/24"), true).unwrap();
        assert_eq!(d.find("x").unwrap().subnets(), vec!["198.18.5.0/24"]);
        let e = d.create(&macvlan("../x", "198.18.5.0/24"), false).unwrap_err().to_string();
        assert!(e.contains("not a valid network name"), "{e}");
    }

    #[test]
    fn other_plugin_types_are_kept_but_not_validated_here() {
        let net = Network::from_json(
            Path::new("/x.conflist"),
            &json!({"cniVersion": "1.0.0", "name": "c", "plugins": [{"type": "nearhost", "datapath": "bridge"}, {"type": "tuning"}]}),
        )
        .unwrap();
        net.validate().unwrap();
        assert_eq!(net.plugins[1]["name"], "c");
        let e = Network::from_json(
            Path::new("/x"),
            &json!({"cniVersion": "1.0.0", "name": "c", "plugins": [{"type": "a/b"}]}),
        )
        .unwrap_err();
        assert!(e.starts_with("plugins[0].type"), "{e}");
    }
}
