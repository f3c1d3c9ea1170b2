//! nearhost with a real Podman (Debian's podman 4.3, runc, conmon; every root
//! in a temporary directory): Podman as the CNI runtime, running containers on
//! nearhost networks exactly as it runs any CNI plugin (ADD on run and start,
//! DEL on stop and rm, port mappings through the `portMappings` capability);
//! and `nearhost attach` finding Podman containers by name and ID.

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/attach.rs"]
mod attach_support;

#[path = "../support/images.rs"]
mod images;

mod attach;
mod engine;
mod runtime;
