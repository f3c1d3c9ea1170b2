//! `nearhost attach` without a container engine: plain processes attached by
//! PID, namespace paths, the CNI path sharing one implementation, chains, and
//! every user error. Runs on this machine and in the kernel lab.

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/attach.rs"]
mod attach_support;

mod chain;
mod cni_path;
mod errors;
mod net;
mod netns;
mod pid;
