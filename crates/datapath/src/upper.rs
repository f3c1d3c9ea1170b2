//! What macvlan and ipvlan share: an upper device on a host NIC (the NIC is
//! its lower device), created straight inside the container namespace under a
//! temporary name, then finished there.

use std::os::fd::AsFd;

use nearhost_kernel::link::{temp_link_name, Link, Mac, NewLink, NewLinkKind};

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, Iface, Namespace, Outcome};
use crate::error::{DatapathError, KernelContext, Result};
use crate::guard::LinkGuard;
use crate::host;

pub struct UpperLink<'a> {
    pub name: &'static str,
    pub parent: &'a str,
    pub link: NewLinkKind<'static>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
}

/// Creates the child link inside the container, finishes it, returns the result.
pub fn add(
    host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>, kind: UpperLink<'_>,
) -> Result<Outcome> {
    let temp = temp_link_name();
    let spec = NewLink {
        name: temp.clone(),
        kind: kind.link.clone(),
        netns: Some(sb.ns.as_fd()),
        mtu: kind.mtu,
        mac: kind.mac,
    };
    host.nl.create_link(&spec).map_err(|e| create_error(e, &kind))?;
    let created =
        sb.nl.link_by_name(&temp).ctx(|| format!("look up new {} {temp}", kind.name))?.ok_or_else(
            || {
                DatapathError::Conflict(format!(
                    "the new {} link {temp} did not appear in the container namespace",
                    kind.name
                ))
            },
        )?;
    let guard = LinkGuard::new(&sb.ns, created.index, format!("{} {}", kind.name, req.ifname));
    let routes = container::ipam_routes(req);
    let setup = Setup::standard(created.index, req, routes.clone());
    let link = container::finish(sb, &setup)?;
    guard.disarm();
    Ok(Outcome::attached(
        Vec::new(),
        Iface::of(&link, true),
        &req.addresses_with_gateways(),
        &routes,
    ))
}

fn create_error(e: nearhost_kernel::KernelError, kind: &UpperLink<'_>) -> DatapathError {
    match e.errno() {
        Some(libc::EOPNOTSUPP) => DatapathError::Unsupported(format!(
            "this kernel has no {} support (module not built in and not loadable); use another datapath or a kernel with CONFIG_{}",
            kind.name,
            kind.name.to_uppercase()
        )),
        Some(libc::EBUSY) if kind.name == "macvlan" => DatapathError::Conflict(format!(
            "master {} is busy: a passthru macvlan (or another upper device) already owns it",
            kind.parent
        )),
        Some(libc::EADDRINUSE) => DatapathError::Conflict(format!(
            "the requested MAC is already used by another {} on master {}",
            kind.name, kind.parent
        )),
        _ => DatapathError::Kernel { context: format!("create {} on master {}", kind.name, kind.parent), source: e },
    }
}

/// CHECK of an upper device: the container side as the previous result says,
/// the link's kind, its mode (read by `mode_of`) and its master.
pub fn check<M: PartialEq + std::fmt::Debug>(
    host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>, kind: &str,
    mode_of: fn(&Link) -> Option<M>, mode: M, master: Option<&str>,
) -> Result<()> {
    let link = container::check_sandbox(sb, req)?;
    if link.kind.as_deref() != Some(kind) {
        return Err(DatapathError::CheckFailed(format!(
            "{} is a {:?} link, not {kind}",
            req.ifname, link.kind
        )));
    }
    let have = mode_of(&link);
    if have.as_ref() != Some(&mode) {
        return Err(DatapathError::CheckFailed(format!(
            "{} is in {kind} mode {have:?}, config says {mode:?}",
            req.ifname
        )));
    }
    check_parent(host, &link, master)
}

/// The container link still hangs off the configured master.
fn check_parent(host: &mut Namespace, link: &Link, configured: Option<&str>) -> Result<()> {
    let master = host::resolve_master(host, configured)?;
    if link.parent != Some(master.index) {
        return Err(DatapathError::CheckFailed(format!(
            "{} is not attached to master {} (#{}); its parent is {:?}",
            link.name, master.name, master.index, link.parent
        )));
    }
    Ok(())
}
