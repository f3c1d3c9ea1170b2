//! nearhost datapath drivers, one module per datapath behind the [`Datapath`]
//! trait, and the container-side work they share.

pub mod bridge;
pub mod claims;
pub mod container;
pub mod context;
pub mod driver;
pub mod error;
pub mod fields;
pub mod guard;
pub mod host;
pub mod hostdev;
pub mod ipvlan;
pub mod lower;
pub mod macvlan;
pub mod moved;
pub mod nat;
pub mod peers;
pub mod routed;
pub mod sriov;
pub mod sriov_bond;
pub mod veth;
pub mod vf;
pub mod vf_lease;
pub mod vf_settings;
pub mod vxlan;

pub use context::{AddRequest, Assigned, CheckRequest, DelRequest, Iface, IpOut, Namespace, Outcome, PortMapping};
pub use nearhost_ipam::RouteSpec;
pub use driver::{build, Datapath, DATAPATHS};
pub use error::{DatapathError, Result};
