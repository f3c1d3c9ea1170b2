//! The plugin: one function per CNI verb, translating the invocation and config
//! into datapath and IPAM calls and their outcome into spec JSON. No networking
//! logic lives here.

use std::net::IpAddr;

use nearhost_datapath::{AddRequest, CheckRequest, DelRequest, Namespace, Outcome};
use nearhost_ipam::Owner;
use nearhost_kernel::link::{parse_mac, Mac};
use nearhost_kernel::{KernelError, NetNs};
use serde_json::{json, Value};

use crate::env::{Command, Invocation};
use crate::error::{code, CniError, Result};
use crate::ipam::Addressing;
use crate::netconf::{self, NetConf};
use crate::result;
use crate::version::{SpecVersion, LATEST};

/// Runs one invocation. `Ok(Some(json))` is printed on stdout; `Ok(None)` prints
/// nothing (DEL, STATUS, GC).
pub fn handle(inv: &Invocation, stdin: &[u8]) -> Result<Option<Value>> {
    match inv.command {
        Command::Version => version(stdin).map(Some),
        Command::Add => add(inv, stdin).map(Some),
        Command::Del => del(inv, stdin).map(|_| None),
        Command::Check => check(inv, stdin).map(|_| None),
        Command::Status => status(stdin).map(|_| None),
        Command::Gc => gc(stdin).map(|_| None),
    }
}

/// Checks one plugin config as ADD would before it touches anything: the
/// shared fields, the datapath's options, the embedded IPAM's config. No
/// namespace, link or state file is opened (`nearhost install-cni`).
pub fn validate(stdin: &[u8]) -> Result<()> {
    let conf = NetConf::parse(stdin)?;
    nearhost_datapath::build(&conf.raw)?;
    if let (Some("nearhost"), Some(raw)) = (conf.ipam_type(), &conf.ipam) {
        nearhost_ipam::IpamConfig::parse(raw)?;
    }
    Ok(())
}

/// The version an error reply is written in: the config's, if it has a good one.
pub fn reply_version(stdin: &[u8]) -> &'static str {
    netconf::decode(stdin)
        .ok()
        .and_then(|v| netconf::version_of(&v).ok())
        .unwrap_or(LATEST)
        .as_str()
}

fn version(stdin: &[u8]) -> Result<Value> {
    // The request's version if we speak it, else our latest.
    let asked =
        netconf::decode(stdin).ok().and_then(|v| netconf::version_of(&v).ok()).unwrap_or(LATEST);
    Ok(json!({"cniVersion": asked.as_str(), "supportedVersions": SpecVersion::supported_list()}))
}

/// Opens `CNI_NETNS`: missing is code 3, not a network namespace is code 4.
fn open_sandbox(path: &str) -> Result<Namespace> {
    let ns = NetNs::open(path).map_err(|e| match &e {
        KernelError::NotNetns(_) => CniError::env("CNI_NETNS", e.to_string()),
        e if e.is_not_found() => {
            CniError::new(code::UNKNOWN_CONTAINER, format!("CNI_NETNS: {path} does not exist"))
        }
        e => CniError::env("CNI_NETNS", format!("{path}: {e}")),
    })?;
    Ok(Namespace::open(ns)?)
}

/// For DEL a namespace that is gone (or unmounted, leaving a plain file) is fine.
fn open_sandbox_if_present(path: &str) -> Result<Option<Namespace>> {
    if path.is_empty() {
        return Ok(None);
    }
    match NetNs::open(path) {
        Ok(ns) => Ok(Some(Namespace::open(ns)?)),
        Err(KernelError::NotNetns(_)) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(CniError::env("CNI_NETNS", format!("{path}: {e}"))),
    }
}

/// Static addresses: `CNI_ARGS` `IP=a[,b]` and the `ips` capability.
fn requested_ips(inv: &Invocation, conf: &NetConf) -> Result<Vec<IpAddr>> {
    let mut ips = conf.runtime.ips.clone();
    if let Some(list) = inv.arg("IP") {
        for text in list.split(',').filter(|t| !t.is_empty()) {
            let ip = netconf::parse_ip_maybe_cidr(text).ok_or_else(|| {
                CniError::env("CNI_ARGS", format!("IP={text} is not an IP address"))
            })?;
            ips.push(ip);
        }
    }
    for (i, a) in ips.iter().enumerate() {
        if ips[..i].iter().any(|b| b.is_ipv6() == a.is_ipv6()) {
            return Err(CniError::env(
                "CNI_ARGS",
                format!(
                    "two static IPv{} addresses requested ({a} is the second)",
                    if a.is_ipv6() { 6 } else { 4 }
                ),
            ));
        }
    }
    Ok(ips)
}

/// A static MAC: `CNI_ARGS` `MAC=` or the `mac` capability.
fn requested_mac(inv: &Invocation, conf: &NetConf) -> Result<Option<Mac>> {
    let (field, text) = match (inv.arg("MAC"), conf.runtime.mac.as_deref()) {
        (Some(m), _) => ("CNI_ARGS MAC", m),
        (None, Some(m)) => ("runtimeConfig.mac", m),
        (None, None) => return Ok(None),
    };
    let mac = parse_mac(text)
        .ok_or_else(|| CniError::config(field, format!("{text:?} is not a MAC address")))?;
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(CniError::config(field, format!("{text} is not a unicast MAC address")));
    }
    Ok(Some(mac))
}

fn add(inv: &Invocation, stdin: &[u8]) -> Result<Value> {
    let conf = NetConf::parse(stdin)?;
    let driver = nearhost_datapath::build(&conf.raw)?;
    let addressing = Addressing::from_conf(&conf)?;
    let requested = requested_ips(inv, &conf)?;
    let mac = requested_mac(inv, &conf)?;
    let mut host = Namespace::current()?;
    let mut sb = open_sandbox(&inv.netns)?;
    // Before anything is reserved: host checks, and the names must be free in the container.
    nearhost_datapath::preflight_add(driver.as_ref(), &mut host, &mut sb, &inv.ifname)?;
    let owner = owner_of(inv, &conf);
    let (assign, release) = addressing.reserve(inv, stdin, &owner, &requested)?;
    let req = AddRequest {
        container_id: &inv.container_id,
        ifname: &inv.ifname,
        mac,
        addresses: &assign.addresses,
        routes: &assign.routes,
        port_mappings: &conf.runtime.port_mappings,
        network: &conf.name,
    };
    let ours = driver.add(&mut host, &mut sb, &req)?;
    release.disarm();
    let outcome = match (&addressing, &conf.prev_result) {
        // Chained: the previous plugin's addresses now live on our interface.
        (Addressing::Chained { prev }, _) => {
            result::merge(Outcome { ips: Vec::new(), ..prev.clone() }, ours)
        }
        (_, Some(prev)) => result::merge(result::decode("prevResult", prev)?.0, ours),
        (_, None) => ours,
    };
    let dns = conf.dns.as_ref().or(assign.dns.as_ref());
    Ok(result::encode(conf.version, &outcome, &inv.netns, dns))
}

fn del(inv: &Invocation, stdin: &[u8]) -> Result<()> {
    let conf = NetConf::parse(stdin)?;
    let driver = nearhost_datapath::build(&conf.raw)?;
    let addressing = Addressing::from_conf(&conf)?;
    let prev = match &conf.prev_result {
        Some(p) => Some(result::decode("prevResult", p)?.0),
        None => None,
    };
    let mut host = Namespace::current()?;
    let mut sb = open_sandbox_if_present(&inv.netns)?;
    let req = DelRequest {
        container_id: &inv.container_id,
        ifname: &inv.ifname,
        prev: prev.as_ref(),
        port_mappings: &conf.runtime.port_mappings,
        network: &conf.name,
    };
    // Teardown keeps going past a failed step and reports every failure.
    let mut errors: Vec<CniError> = Vec::new();
    if let Err(e) = driver.del(&mut host, sb.as_mut(), &req) {
        errors.push(e.into());
    }
    let owner = owner_of(inv, &conf);
    if let Err(e) = addressing.release(inv, stdin, &owner) {
        errors.push(e);
    }
    join_errors(errors)
}

fn join_errors(mut errors: Vec<CniError>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let mut first = errors.remove(0);
    for e in errors {
        first.msg = format!("{}; also: {}", first.msg, e.msg);
    }
    Err(first)
}

fn check(inv: &Invocation, stdin: &[u8]) -> Result<()> {
    let conf = NetConf::parse(stdin)?;
    if !conf.version.has_check() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CHECK needs cniVersion 0.4.0 or later; the config says {}", conf.version),
        ));
    }
    let prev_json = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("prevResult", "CHECK needs the result of the ADD"))?;
    let prev = result::decode("prevResult", prev_json)?.0;
    let driver = nearhost_datapath::build(&conf.raw)?;
    let addressing = Addressing::from_conf(&conf)?;
    let mut host = Namespace::current()?;
    let mut sb = open_sandbox(&inv.netns)?;
    let req = CheckRequest {
        container_id: &inv.container_id,
        ifname: &inv.ifname,
        prev: &prev,
        network: &conf.name,
    };
    driver.check(&mut host, &mut sb, &req)?;
    addressing.check(inv, stdin, &owner_of(inv, &conf), &prev)
}

/// The attachment's key as the embedded IPAM records it.
fn owner_of(inv: &Invocation, conf: &NetConf) -> Owner {
    Owner::new(&inv.container_id, &inv.ifname).on(&conf.name).by_attach(inv.by_attach)
}

fn require_1_1(conf: &NetConf, verb: &str) -> Result<()> {
    if conf.version.is_1_1() {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("{verb} needs cniVersion 1.1.0; the config says {}", conf.version),
        ))
    }
}

fn status(stdin: &[u8]) -> Result<()> {
    let conf = NetConf::parse(stdin)?;
    require_1_1(&conf, "STATUS")?;
    let driver = nearhost_datapath::build(&conf.raw)?;
    let addressing = Addressing::from_conf(&conf)?;
    let mut host = Namespace::current()?;
    driver.status(&mut host).map_err(|e| CniError::new(code::NOT_AVAILABLE, e.to_string()))?;
    match &addressing {
        Addressing::Embedded { ipam, .. } => {
            ipam.state()
                .map_err(|e| CniError::new(code::NOT_AVAILABLE, format!("IPAM store: {e}")))?;
        }
        Addressing::Pool { ipam, cfg, pool } => {
            let state = ipam
                .state()
                .map_err(|e| CniError::new(code::NOT_AVAILABLE, format!("IPAM store: {e}")))?;
            let status = nearhost_ipam::agent_client::ask_agent(
                &cfg.data_dir,
                &nearhost_ipam::agent_client::Request::Status,
                std::time::Duration::from_millis(500),
            );
            if let (Err(e), true) = (status, state.blocks.is_empty()) {
                return Err(CniError::new(
                    code::NOT_AVAILABLE,
                    format!("pool {pool}: this node holds no address blocks and {e}"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn gc(stdin: &[u8]) -> Result<()> {
    let conf = NetConf::parse(stdin)?;
    require_1_1(&conf, "GC")?;
    let valid = conf.valid_attachments()?;
    let addressing = Addressing::from_conf(&conf)?;
    for (ip, owner) in addressing.gc(&conf.name, &valid)? {
        tracing::info!("gc: released {ip} of {owner}");
    }
    // Device claims (VFs, NICs) are released as DEL releases them.
    let mut host = Namespace::current()?;
    for what in nearhost_datapath::gc_claims(&mut host, &conf.name, &valid)? {
        tracing::info!("gc: released {what}");
    }
    Ok(())
}
