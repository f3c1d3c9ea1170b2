//! The CNI plugin, driven through env + stdin as runtimes drive it, on the real
//! kernel, in namespaces each test creates (and removes, also on failure).

use nearhost_testkit as support;

mod bridge;
mod concurrency;
mod delegate;
mod errors;
mod host_reach;
mod hostdev;
mod ipvlan;
mod kernel_lab;
mod lifecycle;
mod logging;
mod macvlan;
mod netkit;
mod repair;
mod routed;
mod routed_bpf;
mod sriov;
mod sriov_bond;
mod versions;
