//! The Kubernetes path: containerd's CRI plugin (Debian's containerd 1.6, runc)
//! as the CNI runtime, driven over its CRI socket with the calls the kubelet
//! makes (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox).
//! containerd finds nearhost in its CNI bin_dir by `type`, sends the CRI's
//! CNI_ARGS (K8S_POD_NAME …) and `HostPort`-spelled port mappings, and calls DEL
//! twice per pod: at stop, and at removal with an empty CNI_NETNS.

use nearhost_testkit as support;

use nearhost_testkit::images;

mod cri;
mod pods;
