//! nearhost with a real Podman (every root in a temporary directory):
//! Debian 12's podman 4.3 as the CNI runtime, running containers on nearhost
//! networks exactly as it runs any CNI plugin (ADD on run and start, DEL on
//! stop and rm, port mappings through the `portMappings` capability); Debian
//! 13's Podman 5 with nearhost as its netavark plugin (`netavark`); and
//! `nearhost attach` finding Podman containers by name and ID.

use nearhost_testkit as support;

use nearhost_testkit::attach as attach_support;

use nearhost_testkit::images;

mod attach;
mod engine;
mod netavark;
mod runtime;
