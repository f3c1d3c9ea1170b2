//! nearhost's kernel layer: the only code that talks to the kernel.
//!
//! Typed requests with no policy in them: which link to create, with which
//! options, is decided by the datapath drivers above.

pub mod addr;
pub mod announce;
pub mod bpf;
pub mod error;
pub mod link;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod pci;
pub mod process;
pub mod route;
pub mod route_events;
pub mod sriov;
pub mod sysctl;
pub mod sysfs;

pub use error::{KernelError, Result};
pub use netlink::Netlink;
pub use netns::NetNs;

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The running kernel's major and minor version (0.0 when unreadable).
pub fn kernel_version() -> (u32, u32) {
    let release = kernel_release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
