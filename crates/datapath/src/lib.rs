//! nearhost datapath drivers: one file per datapath in `drivers/`, behind the
//! [`Datapath`] trait and the [`DATAPATHS`] registry, and the crate-private
//! helpers they share (container side, host checks, claims, VFs, veths).
//!
//! The public API is narrow: build a driver from a network config, the request
//! and outcome types, errors; plus the node-level pieces the agent and the lab
//! drive directly (the VXLAN overlay device, routes to peer nodes, the SR-IOV
//! VF inventory).

mod claims;
mod container;
mod context;
mod driver;
mod drivers;
mod error;
mod fields;
mod guard;
mod host;
mod moved;
mod nat;
pub mod overlay;
pub mod peers;
mod upper;
mod veth;
mod vf;
mod vf_lease;
mod vf_settings;

pub use context::{
    AddRequest, Assigned, CheckRequest, DelRequest, Iface, IpOut, Namespace, Outcome, PortMapping,
};
pub use driver::{build, preflight_add, Datapath, Registration, DATAPATHS};
pub use error::{DatapathError, Result};
pub use fields::validate_ifname;
pub use nearhost_ipam::RouteSpec;
pub use vf::{inventory as vf_inventory, ClaimedVf, PfInventory};
