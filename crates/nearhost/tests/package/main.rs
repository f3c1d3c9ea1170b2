//! nearhost as it is installed: the Debian package in a clean Debian 12 root
//! (`deb`), `nearhost install-cni` (`install_cni`), the Kubernetes manifests
//! (`kubernetes`).

mod deb;
mod install_cni;
mod kubernetes;

/// The source tree (the binary's crate is crates/nearhost).
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}
