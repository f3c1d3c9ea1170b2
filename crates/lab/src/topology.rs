//! Building and removing the lab: a ToR namespace with a bridge, two host
//! namespaces cabled to it by veth pairs, and per datapath one container on
//! each host, attached by the CNI plugin's own code (in-process, from inside
//! the host namespace, exactly as a runtime on that host would call it).

use std::net::IpAddr;
use std::os::fd::AsFd;

use nearhost_cni::{Command, Invocation};
use nearhost_datapath::overlay;
use nearhost_datapath::peers::{self, Peer};
use nearhost_datapath::Namespace;
use nearhost_kernel::link::{NewLink, NewLinkKind};
use nearhost_kernel::route::Route;
use nearhost_kernel::{netns, NetNs, Netlink};
use serde_json::Value;

use crate::error::{LabError, Result};
use crate::measure::Service;
use crate::plan::{self, Dp, HostId, HOSTS, LAN_GATEWAY, LAN_PREFIX, TOR};
use crate::report::LabHostTuning;
use crate::state::{LabDatapath, LabState};

fn ns_handle(name: &str) -> Result<(NetNs, Netlink)> {
    let ns = NetNs::open(netns::named_path(name))
        .map_err(LabError::kernel(format!("open namespace {name}")))?;
    let nl = Netlink::open_in(&ns).map_err(LabError::kernel(format!("netlink in {name}")))?;
    Ok((ns, nl))
}

/// Creates a namespace, records it (so teardown finds it even if we fail
/// next), and brings its loopback up.
fn make_ns(state: &mut LabState, name: &str) -> Result<(NetNs, Netlink)> {
    netns::create_named(name).map_err(LabError::kernel(format!("create namespace {name}")))?;
    state.namespaces.push(name.to_string());
    state.save()?;
    let (ns, mut nl) = ns_handle(name)?;
    let lo = nl.require_link("lo").map_err(LabError::kernel("find lo"))?;
    nl.set_link_up(lo.index, true).map_err(LabError::kernel(format!("lo up in {name}")))?;
    Ok((ns, nl))
}

/// ToR and hosts: the "physical" network.
fn build_fabric(state: &mut LabState) -> Result<()> {
    let (_, mut tor) = make_ns(state, TOR)?;
    let k = |what: String| LabError::kernel(what);
    tor.create_link(&NewLink {
        name: "tor0".into(),
        kind: NewLinkKind::Bridge,
        netns: None,
        mtu: None,
        mac: None,
    })
    .map_err(k("create the ToR bridge".into()))?;
    let br = tor.require_link("tor0").map_err(k("find tor0".into()))?;
    tor.set_link_up(br.index, true).map_err(k("tor0 up".into()))?;
    tor.add_address(br.index, IpAddr::V4(LAN_GATEWAY), LAN_PREFIX, true)
        .map_err(k("address tor0".into()))?;
    tor.add_address(br.index, "2001:2::1".parse().expect("literal"), 64, true)
        .map_err(k("address tor0".into()))?;
    for h in HOSTS {
        let (host_ns, mut host) = make_ns(state, &h.ns())?;
        // The host's NIC is created straight inside the host namespace.
        let cable = NewLink {
            name: h.tor_port(),
            kind: NewLinkKind::Veth {
                peer_name: "eth0".into(),
                peer_netns: Some(host_ns.as_fd()),
                peer_mac: None,
            },
            netns: None,
            mtu: None,
            mac: None,
        };
        tor.create_link(&cable).map_err(k(format!("cable {}", h.ns())))?;
        let port = tor.require_link(&h.tor_port()).map_err(k("find ToR port".into()))?;
        tor.set_master(port.index, Some(br.index)).map_err(k("plug the cable into tor0".into()))?;
        tor.set_link_up(port.index, true).map_err(k("ToR port up".into()))?;
        let nic = host.require_link("eth0").map_err(k("find eth0".into()))?;
        host.set_link_up(nic.index, true).map_err(k("eth0 up".into()))?;
        host.add_address(nic.index, IpAddr::V4(h.ip()), LAN_PREFIX, true)
            .map_err(k("address eth0".into()))?;
        host.add_address(nic.index, h.ip6().parse().expect("valid"), 64, true)
            .map_err(k("address eth0".into()))?;
        let mut default = Route::default_of(false);
        default.gateway = Some(IpAddr::V4(LAN_GATEWAY));
        host.add_route(&default).map_err(k("default route".into()))?;
    }
    Ok(())
}

/// Attaches one container through the CNI plugin's own entry point.
fn cni_add(
    h: HostId, container_ns: &str, conf: &Value,
) -> std::result::Result<Value, nearhost_cni::CniError> {
    let inv = Invocation {
        command: Command::Add,
        container_id: container_ns.to_string(),
        netns: netns::named_path(container_ns).display().to_string(),
        ifname: "eth0".into(),
        args: Default::default(),
        path: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        raw_args: String::new(),
        by_attach: false,
    };
    let host_ns = NetNs::open(netns::named_path(&h.ns()))
        .map_err(|e| nearhost_cni::CniError::new(nearhost_cni::code::IO_FAILURE, e.to_string()))?;
    let stdin = conf.to_string();
    netns::run_in(&host_ns, || nearhost_cni::handle(&inv, stdin.as_bytes()))
        .map_err(|e| nearhost_cni::CniError::new(nearhost_cni::code::IO_FAILURE, e.to_string()))?
        .map(|out| out.unwrap_or(Value::Null))
}

fn first_ip(result: &Value) -> Option<IpAddr> {
    result["ips"][0]["address"].as_str()?.split('/').next()?.parse().ok()
}

/// Attaches `dp` on both hosts. A kernel lacking the datapath (CNI code 104)
/// makes it unavailable with the plugin's reason; any other failure fails the lab.
fn attach_datapath(state: &mut LabState, dp: Dp) -> Result<LabDatapath> {
    let mut entry = LabDatapath {
        datapath: dp,
        available: true,
        reason: None,
        client_ip: None,
        server_ip: None,
        target: None,
        http_target: None,
        client_ns: plan::CLIENT.ns(),
        server_ns: plan::SERVER.ns(),
    };
    if dp != Dp::Host {
        for h in HOSTS {
            let ctr = h.container_ns(dp);
            make_ns(state, &ctr)?;
            let conf = plan::netconf(dp, h).expect("every container datapath has a config");
            match cni_add(h, &ctr, &conf) {
                Ok(result) => {
                    let ip = first_ip(&result);
                    if h == plan::CLIENT {
                        entry.client_ip = ip;
                        entry.client_ns = ctr;
                    } else {
                        entry.server_ip = ip;
                        entry.server_ns = ctr;
                    }
                }
                Err(e) if e.code == nearhost_cni::code::KERNEL_UNSUPPORTED => {
                    entry.available = false;
                    entry.reason = Some(format!("not available on this kernel: {}", e.msg));
                    return Ok(entry);
                }
                Err(e) => {
                    return Err(LabError::Attach {
                        datapath: dp.name().into(),
                        host: h.ns(),
                        msg: e.msg,
                    })
                }
            }
        }
    } else {
        entry.client_ip = Some(IpAddr::V4(plan::CLIENT.ip()));
        entry.server_ip = Some(IpAddr::V4(plan::SERVER.ip()));
    }
    let target = |service| {
        let (ip, port) = plan::target(dp, entry.server_ip, service);
        Some(std::net::SocketAddr::new(ip, port).to_string())
    };
    entry.target = target(Service::Bench);
    entry.http_target = target(Service::Nginx);
    Ok(entry)
}

/// Programs what joins hosts for datapaths with per-host subnets: host-gw
/// routes (routed, bridge) and VXLAN entries (vxlan) — the same calls the node
/// agent makes.
fn join_hosts(dps: &[Dp]) -> Result<()> {
    for h in HOSTS {
        let other = HOSTS.into_iter().find(|o| *o != h).expect("two hosts");
        let ns = NetNs::open(netns::named_path(&h.ns()))
            .map_err(LabError::kernel(format!("open namespace {}", h.ns())))?;
        let mut host = Namespace::open(ns)
            .map_err(|e| LabError::Other(format!("netlink in {}: {e}", h.ns())))?;
        let subnet = |dp: Dp| {
            plan::container_subnet(dp, other).map(|s| s.parse().expect("plan subnets are valid"))
        };
        let peer = |dp: Dp| Peer {
            node_ip: IpAddr::V4(other.ip()),
            subnets: subnet(dp).into_iter().collect(),
        };
        let fail = |what: &str, e: nearhost_datapath::DatapathError| {
            LabError::Other(format!("{what} on {}: {e}", h.ns()))
        };
        for dp in [Dp::Routed, Dp::RoutedBpf, Dp::Netkit] {
            if dps.contains(&dp) {
                peers::add_hostgw(&mut host, &peer(dp)).map_err(|e| fail("host-gw routes", e))?;
            }
        }
        if dps.contains(&Dp::Vxlan) {
            let dev = overlay::existing_device(&mut host, plan::VXLAN_VNI)
                .map_err(|e| fail("find the VXLAN device", e))?;
            peers::add_vxlan(&mut host, dev.index, &peer(Dp::Vxlan))
                .map_err(|e| fail("VXLAN peer", e))?;
        }
    }
    Ok(())
}

/// Builds the lab for `dps` into `state` (saved as it goes, so a failure
/// half-way can be taken down).
pub fn up(state: &mut LabState, dps: &[Dp]) -> Result<()> {
    build_fabric(state)?;
    if dps.contains(&Dp::RoutedBpf) {
        nearhost_kernel::bpf::mount_bpffs(std::path::Path::new(plan::BPFFS))
            .map_err(LabError::kernel(format!("mount a bpffs on {}", plan::BPFFS)))?;
    }
    for &dp in dps {
        let entry = attach_datapath(state, dp)?;
        state.datapaths.push(entry);
        state.save()?;
    }
    let available: Vec<Dp> =
        state.datapaths.iter().filter(|d| d.available).map(|d| d.datapath).collect();
    join_hosts(&available)
}

/// The values of the sysctls `names` (dotted: `net.ipv4.tcp_tw_reuse`) as
/// each lab host sees them: read on a thread inside its namespace, where
/// `/proc/sys/net` is that namespace's. A sysctl this kernel lacks is left out.
pub fn sysctls(names: &[String]) -> Result<Vec<LabHostTuning>> {
    HOSTS
        .iter()
        .map(|h| {
            let ns = NetNs::open(netns::named_path(&h.ns()))
                .map_err(LabError::kernel(format!("open namespace {}", h.ns())))?;
            let values = netns::run_in(&ns, || {
                names
                    .iter()
                    .filter_map(|n| {
                        let parts: Vec<&str> = n.split('.').collect();
                        let v = nearhost_kernel::sysctl::read(&parts).ok()?;
                        Some((n.clone(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
                    })
                    .collect()
            })
            .map_err(LabError::kernel(format!("enter {}", h.ns())))?;
            Ok(LabHostTuning { host: h.ns(), sysctls: values })
        })
        .collect()
}

/// Removes every `nhlab-*` namespace (with all links, routes and NAT rules in
/// them) and stops recorded processes. Idempotent.
pub fn down(state: Option<&LabState>) -> Result<Vec<String>> {
    if let Some(s) = state {
        for server in &s.servers {
            crate::exec::stop(server);
        }
    }
    let mut removed = Vec::new();
    let names = netns::list_named().map_err(LabError::kernel("list namespaces"))?;
    // containers first, then hosts, then the ToR (deleting a host would
    // otherwise leave its containers' peers dangling for a moment)
    let mut ours: Vec<String> = names.into_iter().filter(|n| n.starts_with(plan::PREFIX)).collect();
    ours.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in ours {
        netns::delete_named(&n).map_err(LabError::kernel(format!("delete namespace {n}")))?;
        removed.push(n);
    }
    // routed-bpf's pins: the programs and maps go with the mount.
    nearhost_kernel::bpf::unmount_bpffs(std::path::Path::new(plan::BPFFS))
        .map_err(LabError::kernel(format!("unmount {}", plan::BPFFS)))?;
    crate::state::forget()?;
    Ok(removed)
}
