//! One file per datapath, each with its config parsing, its [`Datapath`]
//! implementation and a `REGISTRATION` line for [`crate::driver::DATAPATHS`].
//!
//! [`Datapath`]: crate::driver::Datapath

pub(crate) mod bridge;
pub(crate) mod hostdev;
pub(crate) mod ipvlan;
pub(crate) mod macvlan;
pub(crate) mod netkit;
pub(crate) mod routed;
pub(crate) mod sriov;
pub(crate) mod sriov_bond;
pub(crate) mod vxlan;

#[cfg(test)]
mod config_checks;
