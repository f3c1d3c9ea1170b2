//! nearhost with a real Podman (Debian's podman 4.3, runc, conmon; every root
//! in a temporary directory): Podman as the CNI runtime, running containers on
//! nearhost networks exactly as it runs any CNI plugin (ADD on run and start,
//! DEL on stop and rm, port mappings through the `portMappings` capability);
//! and `nearhost attach` finding Podman containers by name and ID.

use nearhost_testkit as support;

use nearhost_testkit::attach as attach_support;

use nearhost_testkit::images;

mod attach;
mod engine;
mod runtime;
