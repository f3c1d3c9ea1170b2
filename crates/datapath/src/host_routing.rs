//! BPF host routing for the veth datapaths (`"bpf": true` on `routed`): which
//! devices get which program, which pods and blocks go into the maps, and when
//! it all goes away. The programs and maps themselves are in
//! `nearhost_kernel::bpf`.
//!
//! One pinned set per host namespace, shared by every pod of the host: the
//! first ADD loads it, each ADD attaches `nh_from_pod` to its veth's host end
//! and enters the pod's addresses, the uplinks get `nh_from_uplink`; DEL takes
//! the pod out and, with the last pod, removes the whole set (programs
//! detached, maps freed). Every call first drops entries whose veth no longer
//! exists, so a crash mid-ADD, or a DEL that never came (the namespace was
//! deleted), is repaired by the next call.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use nearhost_kernel::bpf::{HostRouting, PodEntry, Program, Stats, DEFAULT_PIN_ROOT};
use nearhost_kernel::link::{Link, Mac};
use nearhost_kernel::netns;
use serde_json::Value;

use crate::context::Namespace;
use crate::error::{DatapathError, KernelContext, Result};

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The `bpf` field of a network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfConfig {
    /// Devices that get `nh_from_uplink`; `None`: the default route's.
    pub uplinks: Option<Vec<String>>,
    /// Pod address ranges besides the pods' own subnets (the cluster CIDR):
    /// flows towards them are not treated as possibly translated.
    pub pod_cidrs: Vec<IpNet>,
    /// Where the pins go (a directory on a bpffs).
    pub pin_root: PathBuf,
}

impl BpfConfig {
    /// `"bpf": true`, `false` (or absent) or an object with `uplinks`,
    /// `podCIDRs`, `pinPath`.
    pub fn parse(conf: &Value) -> Result<Option<BpfConfig>> {
        let defaults = || BpfConfig {
            uplinks: None,
            pod_cidrs: Vec::new(),
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
        };
        let obj = match conf.get("bpf") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
            Some(Value::Bool(true)) => return Ok(Some(defaults())),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(DatapathError::config(
                    "bpf",
                    format!("expected true, false or an object, got {v}"),
                ))
            }
        };
        let mut c = defaults();
        for (k, v) in obj {
            let strings = |field: &str| -> Result<Vec<String>> {
                v.as_array()
                    .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                    .ok_or_else(|| {
                        DatapathError::config(field, format!("expected a list of strings, got {v}"))
                    })
            };
            match k.as_str() {
                "uplinks" => {
                    let names = strings("bpf.uplinks")?;
                    for n in &names {
                        crate::fields::validate_ifname(n).map_err(|why| {
                            DatapathError::config("bpf.uplinks", format!("{n:?}: {why}"))
                        })?;
                    }
                    c.uplinks = Some(names);
                }
                "podCIDRs" => {
                    for s in strings("bpf.podCIDRs")? {
                        let net: IpNet = s.parse().map_err(|_| {
                            DatapathError::config(
                                "bpf.podCIDRs",
                                format!("{s:?} is not a CIDR (198.18.0.0/16, 2001:2::/64)"),
                            )
                        })?;
                        c.pod_cidrs.push(net.trunc());
                    }
                }
                "pinPath" => {
                    let p = v.as_str().filter(|p| p.starts_with('/') && !p.contains("/../"));
                    c.pin_root = PathBuf::from(p.ok_or_else(|| {
                        DatapathError::config(
                            "bpf.pinPath",
                            format!("expected an absolute path on a bpffs, got {v}"),
                        )
                    })?);
                }
                other => {
                    return Err(DatapathError::config(
                        format!("bpf.{other}"),
                        "unknown field (known: uplinks, podCIDRs, pinPath)",
                    ))
                }
            }
        }
        Ok(Some(c))
    }
}

fn lock() -> Result<nearhost_state::Lock> {
    let path = crate::claims::node_dir().join("bpf-host-routing.lock");
    Ok(nearhost_state::lock(&path, LOCK_TIMEOUT)?)
}

fn bpf_ctx<T>(r: nearhost_kernel::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|source| match source {
        nearhost_kernel::KernelError::Unsupported(m) => {
            DatapathError::Unsupported(format!("BPF host routing: {}: {m}", what()))
        }
        source => {
            DatapathError::Kernel { context: format!("BPF host routing: {}", what()), source }
        }
    })
}

/// Runs `f` on the host's pinned set, in the host namespace, under the lock,
/// with the host's links as they are once the lock is held (a link list
/// taken before it could miss a pod another ADD just entered).
fn with_host<T: Send>(
    host: &mut Namespace, conf: &BpfConfig, f: impl FnOnce(PathBuf, HostLinks) -> Result<T> + Send,
) -> Result<T> {
    let _lock = lock()?;
    let links = host_links(host)?;
    let root = conf.pin_root.clone();
    netns::run_in(&host.ns, move || {
        let dir =
            bpf_ctx(HostRouting::dir_for_current_netns(&root), || "find the pin directory".into())?;
        f(dir, links)
    })
    .ctx(|| "enter the host namespace".into())?
}

/// The host namespace's links: all of them, and the veths among them.
struct HostLinks {
    all: Vec<u32>,
    veths: Vec<u32>,
}

fn host_links(host: &mut Namespace) -> Result<HostLinks> {
    let links = host.nl.links().ctx(|| "list host links".into())?;
    Ok(HostLinks {
        all: links.iter().map(|l| l.index).collect(),
        veths: links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("veth"))
            .map(|l| l.index)
            .collect(),
    })
}

/// Drops pods whose veth is gone and links whose device is gone; removes the
/// whole set when no pod is left and none is being added (`adding`).
fn collect_garbage(hr: HostRouting, links: &HostLinks, adding: Option<u32>) -> Result<()> {
    let pods = bpf_ctx(hr.pods(), || "read the pod map".into())?;
    let mut left = 0;
    for (ip, pod) in pods {
        if links.veths.contains(&pod.ifindex) || Some(pod.ifindex) == adding {
            left += 1;
        } else {
            bpf_ctx(hr.remove_pod(ip), || format!("remove stale pod {ip}"))?;
        }
    }
    if left == 0 && adding.is_none() {
        return bpf_ctx(hr.remove(), || "remove the pinned programs and maps".into());
    }
    for i in bpf_ctx(hr.attached(), || "list attached links".into())? {
        if !links.all.contains(&i) && Some(i) != adding {
            bpf_ctx(hr.detach(i), || format!("remove the link pin of gone ifindex {i}"))?;
        }
    }
    Ok(())
}

/// The uplinks named in the config, or the default route's devices.
fn uplinks(host: &mut Namespace, conf: &BpfConfig) -> Result<Vec<Link>> {
    match &conf.uplinks {
        Some(names) => names
            .iter()
            .map(|n| {
                host.nl.link_by_name(n).ctx(|| format!("look up uplink {n}"))?.ok_or_else(|| {
                    DatapathError::config("bpf.uplinks", format!("no interface {n:?} on the host"))
                })
            })
            .collect(),
        None => {
            let idx = host.nl.default_route_links().ctx(|| "read the default route".into())?;
            let mut out = Vec::new();
            for i in idx {
                if let Some(l) = host.nl.link_by_index(i).ctx(|| "look up the uplink".into())? {
                    out.push(l);
                }
            }
            Ok(out)
        }
    }
}

/// Before an ADD reserves anything: the kernel can attach the programs.
pub fn preflight() -> Result<()> {
    bpf_ctx(nearhost_kernel::bpf::check_tcx(), || "check the kernel".into())
}

/// ADD: the pod behind `host_end` (its container end has `pod_mac`) with
/// `addresses` joins the fast path. On error nothing of this pod is left in
/// the maps or attached, and a set loaded for it alone is removed again.
pub fn attach_pod(
    host: &mut Namespace, conf: &BpfConfig, host_end: &Link, pod_mac: Mac, addresses: &[IpNet],
    subnets: &[IpNet],
) -> Result<()> {
    let host_mac = host_end
        .mac
        .ok_or_else(|| DatapathError::Conflict(format!("veth {} has no MAC", host_end.name)))?;
    let ups = uplinks(host, conf)?;
    let mut blocks: Vec<IpNet> = subnets.iter().map(|a| a.trunc()).collect();
    blocks.extend(conf.pod_cidrs.iter().copied());
    let entry = PodEntry { ifindex: host_end.index, pod_mac, host_mac };
    let ips: Vec<IpAddr> = addresses.iter().map(|a| a.addr()).collect();
    let (name, index) = (host_end.name.clone(), host_end.index);
    with_host(host, conf, move |dir, links| {
        let hr = bpf_ctx(HostRouting::open_or_load(&dir), || "load the programs".into())?;
        let done = (|| {
            for b in &blocks {
                bpf_ctx(hr.add_block(*b), || format!("add pod block {b}"))?;
            }
            for u in &ups {
                bpf_ctx(hr.attach(Program::FromUplink, &u.name, u.index), || {
                    format!("attach to uplink {}", u.name)
                })?;
            }
            bpf_ctx(hr.attach(Program::FromPod, &name, index), || format!("attach to {name}"))?;
            for ip in &ips {
                bpf_ctx(hr.set_pod(*ip, entry), || format!("enter pod {ip}"))?;
            }
            Ok(())
        })();
        if let Err(e) = done {
            // Undo this pod's part; the set goes too if no other pod uses it.
            for ip in &ips {
                let _ = hr.remove_pod(*ip);
            }
            let _ = hr.detach(index);
            let _ = collect_garbage(hr, &links, None);
            return Err(e);
        }
        collect_garbage(hr, &links, Some(index))
    })
}

/// DEL: the pod whose veth host end had `host_end_index` (when known) leaves
/// the fast path; with the last pod the whole set goes.
pub fn detach_pod(
    host: &mut Namespace, conf: &BpfConfig, host_end_index: Option<u32>,
) -> Result<()> {
    with_host(host, conf, move |dir, mut links| {
        if let Some(i) = host_end_index {
            // The veth may still exist while DEL runs: count it as gone.
            links.veths.retain(|&l| l != i);
            links.all.retain(|&l| l != i);
        }
        match HostRouting::open(&dir) {
            None => Ok(()),
            Some(hr) => collect_garbage(hr, &links, None),
        }
    })
}

/// CHECK: the pod's veth has the program attached and its addresses are in
/// the pod map.
pub fn check_pod(
    host: &mut Namespace, conf: &BpfConfig, host_end: &Link, addresses: &[IpAddr],
) -> Result<()> {
    let (name, index) = (host_end.name.clone(), host_end.index);
    let addresses = addresses.to_vec();
    with_host(host, conf, move |dir, _| {
        let Some(hr) = HostRouting::open(&dir) else {
            return Err(DatapathError::CheckFailed(format!(
                "BPF host routing is not loaded ({} is missing)",
                dir.display()
            )));
        };
        let progs =
            bpf_ctx(HostRouting::attached_programs(&name), || format!("query tcx on {name}"))?;
        if !progs.iter().any(|p| p == Program::FromPod.name()) {
            return Err(DatapathError::CheckFailed(format!(
                "{} is not attached to {name} (tcx ingress has: {progs:?})",
                Program::FromPod.name()
            )));
        }
        let pods = bpf_ctx(hr.pods(), || "read the pod map".into())?;
        for ip in addresses {
            if !pods.iter().any(|(p, e)| *p == ip && e.ifindex == index) {
                return Err(DatapathError::CheckFailed(format!(
                    "pod address {ip} is not in the BPF pod map for {name}"
                )));
            }
        }
        Ok(())
    })
}

/// What BPF host routing has in a host namespace: for `nearhost bpf status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The pinned set's directory; `loaded` is false when it is not there.
    pub dir: PathBuf,
    pub loaded: bool,
    pub stats: Stats,
    /// Pod addresses and the host end of their veth.
    pub pods: Vec<(IpAddr, String)>,
    pub blocks: Vec<IpNet>,
    /// Every device with a tcx ingress program, and the programs' names.
    pub attached: Vec<(String, Vec<String>)>,
}

/// The state of the host namespace `host` under `pin_root`.
pub fn status(host: &mut Namespace, pin_root: &std::path::Path) -> Result<Status> {
    let conf = BpfConfig { uplinks: None, pod_cidrs: Vec::new(), pin_root: pin_root.to_owned() };
    let links = host.nl.links().ctx(|| "list host links".into())?;
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.index == i)
            .map_or_else(|| format!("ifindex {i}"), |l| l.name.clone())
    };
    let names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
    let (dir, loaded, stats, pods, blocks, attached) = with_host(host, &conf, move |dir, _| {
        let mut attached = Vec::new();
        for n in names {
            // A device tcx cannot query (none has failed so far) counts as bare.
            let progs = HostRouting::attached_programs(&n).unwrap_or_default();
            if !progs.is_empty() {
                attached.push((n, progs));
            }
        }
        match HostRouting::open(&dir) {
            None => Ok((dir, false, Stats::default(), Vec::new(), Vec::new(), attached)),
            Some(hr) => {
                let stats = bpf_ctx(hr.stats(), || "read the counters".into())?;
                let pods = bpf_ctx(hr.pods(), || "read the pod map".into())?;
                let blocks = bpf_ctx(hr.blocks(), || "read the pod blocks".into())?;
                Ok((dir, true, stats, pods, blocks, attached))
            }
        }
    })?;
    let mut pods: Vec<(IpAddr, String)> =
        pods.into_iter().map(|(ip, p)| (ip, name_of(p.ifindex))).collect();
    pods.sort();
    Ok(Status { dir, loaded, stats, pods, blocks, attached })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bpf_field_is_a_switch_or_an_object() {
        assert_eq!(BpfConfig::parse(&json!({})).unwrap(), None);
        assert_eq!(BpfConfig::parse(&json!({"bpf": false})).unwrap(), None);
        let on = BpfConfig::parse(&json!({"bpf": true})).unwrap().unwrap();
        assert_eq!(on.uplinks, None);
        assert_eq!(on.pin_root, PathBuf::from(DEFAULT_PIN_ROOT));
        let c = BpfConfig::parse(&json!({"bpf": {
            "uplinks": ["eth1"], "podCIDRs": ["198.18.7.9/16"], "pinPath": "/run/x/bpf"}}))
        .unwrap()
        .unwrap();
        assert_eq!(c.uplinks, Some(vec!["eth1".to_string()]));
        assert_eq!(c.pod_cidrs, vec!["198.18.0.0/16".parse::<IpNet>().unwrap()]);
        assert_eq!(c.pin_root, PathBuf::from("/run/x/bpf"));
    }

    #[test]
    fn bad_bpf_fields_are_named() {
        for (conf, field, says) in [
            (json!({"bpf": "yes"}), "bpf", "expected true, false or an object"),
            (json!({"bpf": {"uplinks": "eth0"}}), "bpf.uplinks", "list of strings"),
            (json!({"bpf": {"uplinks": ["a/b"]}}), "bpf.uplinks", "a/b"),
            (json!({"bpf": {"podCIDRs": ["198.18.0.0/33"]}}), "bpf.podCIDRs", "not a CIDR"),
            (json!({"bpf": {"pinPath": "rel/path"}}), "bpf.pinPath", "absolute path"),
            (json!({"bpf": {"uplink": ["eth0"]}}), "bpf.uplink", "unknown field"),
        ] {
            match BpfConfig::parse(&conf) {
                Err(DatapathError::InvalidConfig { field: f, reason }) => {
                    assert_eq!(f, field, "{conf}");
                    assert!(reason.contains(says), "{conf}: {reason}");
                }
                other => panic!("{conf}: expected a config error, got {other:?}"),
            }
        }
    }
}
