//! attach, detach, ls and gc: resolve the target, find the network, and run
//! the network's plugin chain with an invocation built exactly as a runtime
//! builds one — no link is created here — then keep nearhost's record of it.

use std::path::PathBuf;

use nearhost_cni::env::parse_args;
use nearhost_cni::netconf::parse_ip_maybe_cidr;
use nearhost_cni::version::SpecVersion;
use nearhost_cni::{Command, Invocation};
use nearhost_datapath::validate_ifname;

use crate::chain::Chain;
use crate::error::{AttachError, Result};
use crate::netdef::NetDir;
use crate::record::{new_record, Attachment, Records};
use crate::target::{netns_inode, Liveness, Resolver};

/// Where runtimes commonly keep CNI plugins (Debian: /usr/lib/cni).
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin:/usr/lib/cni";

pub struct Context {
    pub net_dir: NetDir,
    pub records: Records,
    pub resolver: Resolver,
    /// `CNI_PATH` for plugins the chain delegates to.
    pub cni_path: Vec<PathBuf>,
}

/// `nearhost attach TARGET --net NAME [--ifname] [--ip]… [--mac]`.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub target: String,
    pub network: String,
    pub ifname: String,
    pub ips: Vec<String>,
    pub mac: Option<String>,
}

/// A record and what became of its target.
#[derive(Debug, Clone)]
pub struct Listed {
    pub attachment: Attachment,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Attached,
    /// The container (process, namespace) is gone; `gc` cleans it up.
    Gone(String),
    /// Its engine could not be asked; `gc` leaves it alone.
    Unknown(String),
    /// An attach was interrupted before it finished; `gc` undoes it.
    Incomplete,
    /// Attached, but CHECK found the interface differs from what ADD made.
    Differs(String),
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<Listed>,
    pub kept: Vec<Listed>,
    pub failed: Vec<(Listed, AttachError)>,
}

pub fn attach(ctx: &Context, req: &AttachRequest) -> Result<Attachment> {
    let cni_args = cni_args(req)?;
    let net = ctx.net_dir.find(&req.network)?;
    let target = ctx.resolver.resolve(&req.target)?;
    let _lock = ctx.records.lock()?;
    for existing in ctx.records.find(&net.name, &target.container_id)? {
        if existing.target.netns_inode == target.netns_inode {
            return Err(AttachError::AlreadyAttached {
                target: req.target.clone(),
                network: net.name,
                ifname: existing.ifname,
            });
        }
        // The container restarted since: that attachment died with its old
        // namespace, only its addresses are left to release.
        release(ctx, &existing, "")?;
    }
    let mut record = new_record(&net, target, &req.ifname, cni_args);
    let netns = record.target.netns.clone();
    let inv = ctx.invocation(Command::Add, &record, &netns)?;
    let chain = chain_of(&record);
    chain.check_plugins_exist(&inv)?;
    // Written before the ADD: if this process dies mid-way, `gc` finds the
    // unfinished record and undoes whatever the ADD got to.
    ctx.records.save(&record)?;
    match chain.add(&inv) {
        Ok(result) => record.result = Some(result),
        Err(e) => {
            // The ADD's error is the one to report; a record left behind is
            // an unfinished attach that `gc` undoes.
            if let Err(rm) = ctx.records.remove(&record) {
                tracing::error!("{rm}");
            }
            return Err(e);
        }
    }
    if let Err(e) = ctx.records.save(&record) {
        // An attachment nobody can see cannot be detached: undo it.
        let _ = release(ctx, &record, &netns);
        return Err(e);
    }
    Ok(record)
}

/// `nearhost detach TARGET --net NAME [--ifname]`: works also when the
/// container is gone, by the name or ID it had.
pub fn detach(
    ctx: &Context, target: &str, network: &str, ifname: Option<&str>,
) -> Result<Attachment> {
    let _lock = ctx.records.lock()?;
    let found = match ctx.resolver.resolve(target) {
        Ok(t) => ctx.records.find(network, &t.container_id)?,
        Err(unresolved) => {
            let (all, _) = ctx.records.list()?;
            let named: Vec<Attachment> = all
                .into_iter()
                .filter(|a| a.network == network && a.target.answers_to(target))
                .collect();
            if named.is_empty() {
                return Err(unresolved);
            }
            named
        }
    };
    let record =
        found.into_iter().find(|a| ifname.is_none_or(|i| a.ifname == i)).ok_or_else(|| {
            AttachError::NotAttached {
                target: target.into(),
                network: network.into(),
                ifname: ifname.map(str::to_string),
            }
        })?;
    release(ctx, &record, &live_netns(&record))?;
    Ok(record)
}

/// Every record with what became of its target; with `check`, live ones are
/// also verified by CHECK through their chain (the plugin's own comparison of
/// the kernel's state with the recorded result).
pub fn list(ctx: &Context, check: bool) -> Result<(Vec<Listed>, Vec<AttachError>)> {
    let (records, bad) = ctx.records.list()?;
    let listed = records
        .into_iter()
        .map(|a| {
            let status = match (&a.result, ctx.resolver.liveness(&a.target)) {
                (None, _) => Status::Incomplete,
                (Some(result), Liveness::Alive) if check => match verify(ctx, &a, result) {
                    Ok(()) => Status::Attached,
                    Err(e) => Status::Differs(e.to_string()),
                },
                (_, Liveness::Alive) => Status::Attached,
                (_, Liveness::Gone(why)) => Status::Gone(why),
                (_, Liveness::Unknown(why)) => Status::Unknown(why),
            };
            Listed { attachment: a, status }
        })
        .collect();
    Ok((listed, bad))
}

fn verify(ctx: &Context, a: &Attachment, result: &serde_json::Value) -> Result<()> {
    let inv = ctx.invocation(Command::Check, a, &a.target.netns)?;
    chain_of(a).check(&inv, result)
}

/// Releases every attachment whose target is gone (and unfinished ones).
pub fn gc(ctx: &Context) -> Result<GcReport> {
    let _lock = ctx.records.lock()?;
    let (listed, _) = list(ctx, false)?;
    let mut report = GcReport::default();
    for l in listed {
        match l.status {
            Status::Attached | Status::Differs(_) => {}
            Status::Unknown(_) => report.kept.push(l),
            Status::Gone(_) | Status::Incomplete => {
                match release(ctx, &l.attachment, &live_netns(&l.attachment)) {
                    Ok(()) => report.removed.push(l),
                    Err(e) => report.failed.push((l, e)),
                }
            }
        }
    }
    Ok(report)
}

/// DEL through the recorded chain, then the record goes.
fn release(ctx: &Context, a: &Attachment, netns: &str) -> Result<()> {
    let inv = ctx.invocation(Command::Del, a, netns)?;
    // libcni hands DEL the cached result from 0.4.0 on.
    let with_prev = SpecVersion::parse(&a.cni_version).is_some_and(SpecVersion::has_check);
    chain_of(a).del(&inv, a.result.as_ref().filter(|_| with_prev))?;
    ctx.records.remove(a)
}

/// The recorded namespace if it is still the same one, else none (DEL is then
/// told no `CNI_NETNS`, as containerd's second DEL is).
fn live_netns(a: &Attachment) -> String {
    match netns_inode(&a.target.netns) {
        Ok(i) if i == a.target.netns_inode => a.target.netns.clone(),
        _ => String::new(),
    }
}

fn chain_of(a: &Attachment) -> Chain<'_> {
    Chain { network: &a.network, cni_version: &a.cni_version, plugins: &a.plugins }
}

impl Context {
    fn invocation(&self, command: Command, a: &Attachment, netns: &str) -> Result<Invocation> {
        let verb = match command {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            _ => "DEL",
        };
        let to_err = |e: nearhost_cni::CniError| AttachError::Plugin {
            network: a.network.clone(),
            plugin: "(invocation)".into(),
            verb,
            code: e.code,
            msg: e.msg,
            hint: "",
        };
        let inv = Invocation {
            command,
            container_id: a.target.container_id.clone(),
            netns: netns.to_string(),
            ifname: a.ifname.clone(),
            args: parse_args(&a.cni_args).map_err(to_err)?,
            path: self.cni_path.clone(),
            raw_args: a.cni_args.clone(),
            by_attach: true,
        };
        inv.validate().map_err(to_err)?;
        Ok(inv)
    }
}

/// `CNI_ARGS` for the flags, checked here so that errors name the flag.
/// `IgnoreUnknown=1` as runtimes send it: delegated plugins that do not know
/// `IP`/`MAC` must not fail on them.
fn cni_args(req: &AttachRequest) -> Result<String> {
    validate_ifname(&req.ifname).map_err(|r| AttachError::bad_flag("--ifname", &req.ifname, r))?;
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    for text in &req.ips {
        let ip = parse_ip_maybe_cidr(text)
            .ok_or_else(|| AttachError::bad_flag("--ip", text, "is not an IP address"))?;
        if ips.iter().any(|o| o.is_ipv6() == ip.is_ipv6()) {
            return Err(AttachError::bad_flag(
                "--ip",
                text,
                "a second address of the same family; give at most one IPv4 and one IPv6",
            ));
        }
        ips.push(ip);
    }
    if let Some(m) = &req.mac {
        let mac = nearhost_kernel::link::parse_mac(m).ok_or_else(|| {
            AttachError::bad_flag("--mac", m, "is not a MAC address (aa:bb:cc:dd:ee:ff)")
        })?;
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(AttachError::bad_flag(
                "--mac",
                m,
                "is not a unicast MAC address (the first byte must be even, e.g. 02:…)",
            ));
        }
    }
    let mut parts = Vec::new();
    if !ips.is_empty() {
        parts.push(format!(
            "IP={}",
            ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        ));
    }
    if let Some(m) = &req.mac {
        parts.push(format!("MAC={m}"));
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    parts.insert(0, "IgnoreUnknown=1".into());
    Ok(parts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ips: &[&str], mac: Option<&str>, ifname: &str) -> AttachRequest {
        AttachRequest {
            ifname: ifname.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            mac: mac.map(str::to_string),
            ..AttachRequest::default()
        }
    }

    #[test]
    fn flags_become_cni_args() {
        assert_eq!(cni_args(&req(&[], None, "eth1")).unwrap(), "");
        assert_eq!(
            cni_args(&req(&["198.18.0.9", "2001:2::9/64"], Some("02:00:00:00:00:09"), "eth1"))
                .unwrap(),
            "IgnoreUnknown=1;IP=198.18.0.9,2001:2::9;MAC=02:00:00:00:00:09"
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let cases = [
            (
                req(&[], None, "much-too-long-name"),
                "--ifname \"much-too-long-name\": is longer than 15 bytes",
            ),
            (req(&["nope"], None, "eth1"), "--ip \"nope\": is not an IP address"),
            (
                req(&["198.18.0.1", "198.18.0.2"], None, "eth1"),
                "a second address of the same family",
            ),
            (req(&[], Some("zz"), "eth1"), "--mac \"zz\": is not a MAC address"),
            (req(&[], Some("01:00:5e:00:00:01"), "eth1"), "is not a unicast MAC address"),
        ];
        for (r, want) in cases {
            let e = cni_args(&r).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }
}
