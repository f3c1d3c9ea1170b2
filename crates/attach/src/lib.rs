//! `nearhost attach`: put an already-running container (Docker, Podman, any
//! PID or network namespace) on a nearhost network, with exactly the code the
//! CNI plugin runs — this crate builds a CNI invocation and calls the plugin's
//! entry in-process; it never creates links itself.
//!
//! - [`netdef`]: network definitions (CNI `.conf`/`.conflist` files), [`create`]
//!   builds one from `net create` flags;
//! - [`target`] (with [`engine`], [`http`]): what `TARGET` names;
//! - [`chain`]: a network's plugin chain run as libcni runs it;
//! - [`record`]: nearhost's record of each attachment;
//! - [`ops`]: attach, detach, ls, gc.

pub mod chain;
pub mod create;
pub mod engine;
pub mod error;
pub mod http;
pub mod netdef;
pub mod ops;
pub mod record;
pub mod target;

pub use error::{AttachError, Result};
pub use netdef::{NetDir, Network};
pub use ops::{attach, detach, gc, list, AttachRequest, Context, GcReport, Listed, Status};
pub use record::{Attachment, Records};
pub use target::{EngineChoice, Resolver, Target, TargetKind};
