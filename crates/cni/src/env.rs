//! The invocation: what a runtime passes in environment variables (or what the
//! `attach` front end fills in the same way).

use std::collections::BTreeMap;
use std::path::PathBuf;

use nearhost_datapath::validate_ifname;

use crate::error::{CniError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::env(
                    "CNI_COMMAND",
                    format!("{other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
                ))
            }
        })
    }
}

/// One plugin call.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime sent none (allowed for DEL).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`: where delegated plugins (IPAM) are looked up.
    pub path: Vec<PathBuf>,
    /// The raw environment values, passed on to delegated plugins unchanged.
    pub raw_args: String,
    /// Made by `nearhost attach` (in-process), not by a runtime: its
    /// reservations are released by `nearhost gc`, never by a runtime's GC.
    pub by_attach: bool,
}

impl Invocation {
    /// Reads and validates the `CNI_*` variables for `command`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let command = Command::parse(&get("CNI_COMMAND").unwrap_or_default())?;
        let raw_args = get("CNI_ARGS").unwrap_or_default();
        let inv = Invocation {
            command,
            container_id: get("CNI_CONTAINERID").unwrap_or_default(),
            netns: get("CNI_NETNS").unwrap_or_default(),
            ifname: get("CNI_IFNAME").unwrap_or_default(),
            args: parse_args(&raw_args)?,
            path: get("CNI_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default(),
            raw_args,
            by_attach: false,
        };
        inv.validate()?;
        Ok(inv)
    }

    /// The checks of the spec's "parameters" section, per command.
    pub fn validate(&self) -> Result<()> {
        let needs_attachment = matches!(self.command, Command::Add | Command::Del | Command::Check);
        if !needs_attachment {
            return Ok(());
        }
        if self.container_id.is_empty() {
            return Err(CniError::env("CNI_CONTAINERID", "is required"));
        }
        validate_container_id(&self.container_id)?;
        if self.ifname.is_empty() {
            return Err(CniError::env("CNI_IFNAME", "is required"));
        }
        validate_ifname(&self.ifname)
            .map_err(|r| CniError::env("CNI_IFNAME", format!("{:?} {r}", self.ifname)))?;
        if self.command != Command::Del && self.netns.is_empty() {
            return Err(CniError::env("CNI_NETNS", "is required"));
        }
        if self.path.is_empty() && self.command != Command::Del {
            return Err(CniError::env(
                "CNI_PATH",
                "is required (the directories holding CNI plugins)",
            ));
        }
        Ok(())
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.get(key).map(String::as_str)
    }
}

/// Container IDs: letters, digits, `_ . -`, starting with a letter or digit.
fn validate_container_id(id: &str) -> Result<()> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok {
        return Err(CniError::env(
            "CNI_CONTAINERID",
            format!("{id:?} may contain only letters, digits, '_', '.', '-' and must start with a letter or digit"),
        ));
    }
    Ok(())
}

/// `CNI_ARGS`: `KEY=VALUE;KEY=VALUE`.
pub fn parse_args(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CniError::env("CNI_ARGS", format!("{pair:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(CniError::env("CNI_ARGS", format!("{pair:?} has an empty key")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use std::collections::HashMap;

    fn inv(vars: &[(&str, &str)]) -> Result<Invocation> {
        let m: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Invocation::from_env(|k| m.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];

    fn with(over: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> =
            BASE.iter().filter(|(k, _)| !over.iter().any(|(o, _)| o == k)).copied().collect();
        v.extend(over.iter().filter(|(_, val)| !val.is_empty()).copied());
        v
    }

    #[test]
    fn valid_add() {
        let i =
            inv(&with(&[("CNI_ARGS", "IgnoreUnknown=1;IP=198.18.0.9;K8S_POD_NAME=p")])).unwrap();
        assert_eq!(i.command, Command::Add);
        assert_eq!(i.arg("IP"), Some("198.18.0.9"));
    }

    #[test]
    fn bad_env_names_the_variable() {
        for (over, var) in [
            (vec![("CNI_COMMAND", "PUT")], "CNI_COMMAND"),
            (vec![("CNI_CONTAINERID", "")], "CNI_CONTAINERID"),
            (vec![("CNI_CONTAINERID", "-bad")], "CNI_CONTAINERID"),
            (vec![("CNI_IFNAME", "a-very-long-ifname")], "CNI_IFNAME"),
            (vec![("CNI_NETNS", "")], "CNI_NETNS"),
            (vec![("CNI_PATH", "")], "CNI_PATH"),
            (vec![("CNI_ARGS", "novalue")], "CNI_ARGS"),
        ] {
            let e = inv(&with(&over)).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{over:?}");
            assert!(e.msg.starts_with(var), "{} should name {var}", e.msg);
        }
    }

    #[test]
    fn del_allows_empty_netns() {
        assert!(inv(&with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "")])).is_ok());
    }
}
