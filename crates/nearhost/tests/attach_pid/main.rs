//! `nearhost attach` without a container engine: plain processes attached by
//! PID, namespace paths, the CNI path sharing one implementation, chains, and
//! every user error. Runs on this machine and in the kernel lab.

use nearhost_testkit as support;

use nearhost_testkit::attach as attach_support;

mod chain;
mod cni_path;
mod errors;
mod net;
mod netns;
mod pid;
