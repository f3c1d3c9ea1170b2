//! Device pairs between the host and a container — veth for the bridge,
//! routed and vxlan datapaths, netkit for netkit: the host end in the host
//! namespace under a random `PREFIX + hex` name, the peer created directly
//! inside the container under a temporary name.

use std::net::IpAddr;
use std::os::fd::AsFd;

use ipnet::IpNet;
use nearhost_kernel::route::Route;

use nearhost_kernel::link::{
    random_link_name, random_mac, temp_link_name, Link, Mac, NewLink, NewLinkKind,
};

use crate::context::{CheckRequest, Namespace};
use crate::error::{DatapathError, KernelContext, Result};
use crate::guard::LinkGuard;

/// Which kind of pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairKind {
    Veth,
    /// netkit in L3 mode (Linux ≥ 6.7): no MACs.
    Netkit,
}

impl PairKind {
    fn name(self) -> &'static str {
        match self {
            PairKind::Veth => "veth",
            PairKind::Netkit => "netkit",
        }
    }
}

pub struct Veth {
    pub kind: PairKind,
    pub host: Link,
    /// Index of the container end (still under its temporary name).
    pub sandbox_index: u32,
    /// Deletes the pair unless disarmed.
    pub guard: LinkGuard,
}

/// Creates a veth pair. `host_prefix` is at most 5 bytes (`nhv`, `nhr`).
pub fn create(
    host: &mut Namespace, sb: &mut Namespace, host_prefix: &str, mtu: Option<u32>,
    sandbox_mac: Option<Mac>,
) -> Result<Veth> {
    create_pair(host, sb, PairKind::Veth, host_prefix, mtu, sandbox_mac)
}

/// Creates a pair of `kind`; a netkit pair takes no MAC. A kernel without
/// the kind is refused as unsupported, naming the kernel.
pub fn create_pair(
    host: &mut Namespace, sb: &mut Namespace, kind: PairKind, host_prefix: &str, mtu: Option<u32>,
    sandbox_mac: Option<Mac>,
) -> Result<Veth> {
    let temp = temp_link_name();
    let mut last_err = None;
    for _ in 0..3 {
        let host_name = random_link_name(host_prefix);
        let (link_kind, mac) = match kind {
            PairKind::Veth => (
                NewLinkKind::Veth {
                    peer_name: temp.clone(),
                    peer_netns: Some(sb.ns.as_fd()),
                    peer_mac: sandbox_mac,
                },
                Some(random_mac()),
            ),
            PairKind::Netkit => (
                NewLinkKind::Netkit { peer_name: temp.clone(), peer_netns: Some(sb.ns.as_fd()) },
                None,
            ),
        };
        let spec = NewLink {
            name: host_name.clone(),
            kind: link_kind,
            netns: None,
            mtu,
            // Set, not left to the kernel: udev's MACAddressPolicy=persistent
            // rewrites a veth's random MAC some time after creation, which
            // would leave the container's pinned neighbour entry (routed,
            // hostReach) pointing at a MAC the host end no longer has. A
            // MAC given at creation counts as set and is left alone.
            // (netkit in L3 mode has no MAC.)
            mac,
        };
        match host.nl.create_link(&spec) {
            Ok(()) => {
                let host_link = host
                    .nl
                    .require_link(&host_name)
                    .ctx(|| format!("look up new {} {host_name}", kind.name()))?;
                let guard = LinkGuard::new(
                    &host.ns,
                    host_link.index,
                    format!("{} {host_name}", kind.name()),
                );
                let peer = sb
                    .nl
                    .link_by_name(&temp)
                    .ctx(|| format!("look up {} peer {temp}", kind.name()))?
                    .ok_or_else(|| {
                        DatapathError::Conflict(format!(
                            "the {} peer {temp} did not appear in the container namespace",
                            kind.name()
                        ))
                    })?;
                return Ok(Veth { kind, host: host_link, sandbox_index: peer.index, guard });
            }
            // A random host name collided with an existing link: draw again.
            Err(e) if e.is_exists() => last_err = Some(e),
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => {
                return Err(DatapathError::Unsupported(format!(
                    "this kernel ({}) has no {} devices{}: {}",
                    nearhost_kernel::kernel_release(),
                    kind.name(),
                    if kind == PairKind::Netkit {
                        " (netkit needs Linux 6.7 or later, built with CONFIG_NETKIT)"
                    } else {
                        ""
                    },
                    e.reason()
                )))
            }
            Err(e) => {
                return Err(DatapathError::Kernel {
                    context: format!("create {} pair {host_name}", kind.name()),
                    source: e,
                })
            }
        }
    }
    Err(DatapathError::Kernel {
        context: format!("create {} pair", kind.name()),
        source: last_err.expect("loop ran"),
    })
}

/// The host end of the pair (veth or netkit) whose container end is
/// `sandbox_link` (found by the peer index the kernel reports).
pub fn host_end(host: &mut Namespace, sandbox_link: &Link) -> Result<Option<Link>> {
    let Some(peer) = sandbox_link.parent else { return Ok(None) };
    let found = host.nl.link_by_index(peer).ctx(|| "look up the host end of the pair".into())?;
    Ok(found.filter(|l| matches!(l.kind.as_deref(), Some("veth") | Some("netkit"))))
}

/// The host side of a pair that carries a container's addresses (routed,
/// hostReach, netkit): for each address a /32 (/128) route through
/// `host_end` and, on a veth, the container end's MAC pinned, so the host
/// never ARPs for it (netkit in L3 mode has no neighbours).
pub fn route_to_container(
    host: &mut Namespace, host_end: &Link, addresses: impl IntoIterator<Item = IpAddr>,
    container_mac: Option<Mac>,
) -> Result<()> {
    for ip in addresses {
        if let Some(mac) = container_mac {
            host.nl
                .set_permanent_neighbour(host_end.index, ip, mac)
                .ctx(|| format!("add neighbour {ip} on {}", host_end.name))?;
        }
        let mut r = Route::to(IpNet::from(ip));
        r.oif = Some(host_end.index);
        host.nl.add_route(&r).ctx(|| format!("add host route {ip} dev {}", host_end.name))?;
    }
    Ok(())
}

/// CHECK of [`route_to_container`]: every address of the ADD's result still
/// has its host route through `host_end`.
pub fn check_host_routes(
    host: &mut Namespace, host_end: &Link, req: &CheckRequest<'_>,
) -> Result<()> {
    let mut have = host.nl.routes(false).ctx(|| "list host routes".into())?;
    have.extend(host.nl.routes(true).ctx(|| "list host routes".into())?);
    for ip in &req.prev.ips {
        let want = IpNet::from(ip.address.addr());
        if !have.iter().any(|r| r.dst == want && r.oif == Some(host_end.index)) {
            return Err(DatapathError::CheckFailed(format!(
                "host route {want} dev {} is missing",
                host_end.name
            )));
        }
    }
    Ok(())
}
