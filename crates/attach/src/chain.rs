//! Running a network's plugin chain as libcni does: ADD in order, each plugin
//! given the previous one's result as `prevResult`; DEL in reverse with the
//! cached result; CHECK in order. `type: nearhost` runs in this process through
//! the plugin's own entry ([`nearhost_cni::plugin::handle`]); any other type is
//! executed from `CNI_PATH` exactly as a runtime would.

use nearhost_cni::error::code;
use nearhost_cni::version::SpecVersion;
use nearhost_cni::{delegate, result, CniError, Command, Invocation};
use serde_json::Value;

use crate::error::{AttachError, Result};
use crate::netdef::{plugin_type, NEARHOST_TYPE};

pub struct Chain<'a> {
    pub network: &'a str,
    pub cni_version: &'a str,
    pub plugins: &'a [Value],
}

impl Chain<'_> {
    /// Every delegated plugin must exist before anything is changed.
    pub fn check_plugins_exist(&self, inv: &Invocation) -> Result<()> {
        for (index, p) in self.plugins.iter().enumerate() {
            let ty = plugin_type(p);
            if ty != NEARHOST_TYPE && delegate::find(inv, ty).is_err() {
                let path =
                    inv.path.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
                return Err(AttachError::PluginMissing {
                    network: self.network.into(),
                    index,
                    plugin: ty.into(),
                    path,
                });
            }
        }
        Ok(())
    }

    /// ADD through the chain; returns the last plugin's result. When plugin N
    /// fails, plugins 0..N (which succeeded) are deleted again; plugin N cleans
    /// up after itself (nearhost's own ADD rolls back with guards), and a DEL
    /// of it could remove an interface it did not make (a name already taken).
    pub fn add(&self, inv: &Invocation) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for (i, plugin) in self.plugins.iter().enumerate() {
            match self.run(plugin, Command::Add, inv, prev.as_ref()) {
                Ok(Some(out)) => prev = Some(self.normalize(&out, inv)?),
                Ok(None) => {
                    let e = CniError::new(code::DELEGATE_FAILED, "returned no result");
                    self.undo(&self.plugins[..i], inv, prev.as_ref());
                    return Err(self.error(plugin, "ADD", e));
                }
                Err(e) => {
                    self.undo(&self.plugins[..i], inv, prev.as_ref());
                    return Err(self.error(plugin, "ADD", e));
                }
            }
        }
        prev.ok_or_else(|| {
            self.error(
                &Value::Null,
                "ADD",
                CniError::new(code::INVALID_CONFIG, "the network has no plugins"),
            )
        })
    }

    fn undo(&self, done: &[Value], inv: &Invocation, prev: Option<&Value>) {
        for plugin in done.iter().rev() {
            if let Err(e) = self.run(plugin, Command::Del, inv, prev) {
                tracing::error!(
                    "rollback: DEL of plugin {} failed: {}",
                    plugin_type(plugin),
                    e.msg
                );
            }
        }
    }

    /// DEL through the chain in reverse. Every plugin is called even when one
    /// fails; the error reports all failures.
    pub fn del(&self, inv: &Invocation, prev: Option<&Value>) -> Result<()> {
        let mut failures: Vec<AttachError> = Vec::new();
        for plugin in self.plugins.iter().rev() {
            if let Err(e) = self.run(plugin, Command::Del, inv, prev) {
                failures.push(self.error(plugin, "DEL", e));
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(AttachError::Many { errors: failures }),
        }
    }

    /// CHECK through the chain, each plugin given the cached result.
    pub fn check(&self, inv: &Invocation, prev: &Value) -> Result<()> {
        for plugin in self.plugins {
            self.run(plugin, Command::Check, inv, Some(prev))
                .map_err(|e| self.error(plugin, "CHECK", e))?;
        }
        Ok(())
    }

    fn run(
        &self, plugin: &Value, command: Command, inv: &Invocation, prev: Option<&Value>,
    ) -> std::result::Result<Option<Value>, CniError> {
        let mut conf = plugin.clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let stdin = serde_json::to_vec(&conf).expect("JSON values serialize");
        let mut inv = inv.clone();
        inv.command = command;
        match plugin_type(plugin) {
            NEARHOST_TYPE => nearhost_cni::handle(&inv, &stdin),
            other => delegate::exec(&inv, other, command, &stdin),
        }
    }

    /// A result in the list's `cniVersion` (libcni converts delegated results
    /// before passing them on as `prevResult`).
    fn normalize(&self, out: &Value, inv: &Invocation) -> Result<Value> {
        let version = SpecVersion::parse(self.cni_version).unwrap_or(nearhost_cni::version::LATEST);
        let (outcome, dns) = result::decode("result", out).map_err(|e| AttachError::Plugin {
            network: self.network.into(),
            plugin: "(chain)".into(),
            verb: "ADD",
            code: e.code,
            msg: e.msg,
            hint: "",
        })?;
        Ok(result::encode(version, &outcome, &inv.netns, dns.as_ref()))
    }

    fn error(&self, plugin: &Value, verb: &'static str, e: CniError) -> AttachError {
        AttachError::Plugin {
            network: self.network.into(),
            plugin: plugin_type(plugin).into(),
            verb,
            code: e.code,
            msg: e.msg,
            hint: hint(e.code),
        }
    }
}

/// What a user of `nearhost attach` can do about a plugin error code.
fn hint(c: u32) -> &'static str {
    match c {
        code::INVALID_CONFIG => "; fix the network definition (`nearhost net show NAME` prints it)",
        code::RANGE_EXHAUSTED => "; the network has no free address: detach containers that no longer need one, or run `nearhost gc`",
        code::ADDRESS_TAKEN => "; choose another --ip, or leave --ip out",
        code::ADDRESS_NOT_ALLOWED => "; --ip must lie inside the network's ranges (`nearhost net show NAME`)",
        code::INTERFACE_CONFLICT => "; choose another --ifname (or --mac)",
        code::KERNEL_UNSUPPORTED => "; use a network with another datapath on this kernel",
        _ => "",
    }
}
