//! nearhost's CNI front end: spec versions, errors and result encoding, and the
//! plugin entry ([`plugin::handle`]) that the binary calls when `CNI_COMMAND`
//! is set — and that `nearhost attach` calls with an invocation it builds.

pub mod delegate;
pub mod env;
pub mod error;
pub mod ipam;
pub mod netconf;
pub mod plugin;
pub mod result;
pub mod version;

pub use env::{Command, Invocation};
pub use error::{code, CniError};
pub use plugin::handle;
