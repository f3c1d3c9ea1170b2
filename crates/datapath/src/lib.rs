//! nearhost datapath drivers: one file per datapath in `drivers/`, behind the
//! [`Datapath`] trait and the [`DATAPATHS`] registry, and the crate-private
//! helpers they share (container side, host checks, claims, VFs, veths).
//!
//! The public API is narrow: build a driver from a network config, the request
//! and outcome types, errors; plus the node-level pieces the agent and the lab
//! drive directly (the VXLAN overlay device, routes to peer nodes, the SR-IOV
//! VF inventory and the node-wide device claims).

mod claims;
mod container;
mod context;
mod driver;
mod drivers;
mod error;
mod fields;
mod guard;
mod host;
mod host_reach;
mod host_routing;
mod moved;
mod nat;
pub mod overlay;
pub mod peers;
mod upper;
mod userspace;
mod veth;
mod vf;
mod vf_lease;
mod vf_settings;

pub use claims::{node_dir as claims_dir, NODE_DIR_ENV as CLAIMS_DIR_ENV};
pub use context::{
    AddRequest, Assigned, CheckRequest, DelRequest, Iface, IpOut, Namespace, Outcome, PortMapping,
};
pub use driver::{build, preflight_add, Datapath, Registration, DATAPATHS};
pub use error::{DatapathError, Result};
pub use fields::validate_ifname;
pub use host_routing::{status as bpf_status, Status as BpfStatus};
pub use nearhost_ipam::RouteSpec;
pub use userspace::{held as held_by_userspace_driver, Held};
pub use vf::{inventory as vf_inventory, ClaimedVf, PfInventory};

/// The parent interface a macvlan/ipvlan network would use: `configured` if
/// the host namespace has it, else the interface of its default route (what
/// ADD does when `master` is not set). Errors name the field `master`.
pub fn resolve_master(host: &mut Namespace, configured: Option<&str>) -> Result<String> {
    host::resolve_master(host, configured).map(|l| l.name)
}

/// CNI GC of device claims (SR-IOV VFs, whole NICs): the claims of `network`
/// whose attachment (container ID, ifname) is not in `valid` are released as
/// DEL releases them once the container's namespace is gone. Returns what was
/// released; a failure does not stop the others.
pub fn gc_claims(
    host: &mut Namespace, network: &str, valid: &[(String, String)],
) -> Result<Vec<String>> {
    let mut released = Vec::new();
    let mut errors = Vec::new();
    for found in [
        moved::gc::<vf::VfClaim>(host, network, valid),
        moved::gc::<drivers::hostdev::HostdevClaim>(host, network, valid),
    ] {
        match found {
            Ok(r) => released.extend(r),
            Err(e) => errors.push(e),
        }
    }
    error::join(errors).map(|()| released)
}
