//! Host tuning for low latency, as a plan first (`nearhost tune plan`): read
//! the host ([`host::Host::read`]: CPUs, NUMA nodes, NICs, their queues and
//! IRQs, the current settings) from a root that is `/` on a real host or a
//! fake `/proc` + `/sys` tree in tests, compute the change list a profile asks
//! for ([`plan::plan`]), each change with its old and new value and the
//! study's line it automates. Applying and reverting are writes of those
//! values, so everything up to the write is pure and tested on fake trees.

pub mod apply;
pub mod cpuset;
pub mod doctor;
pub mod host;
pub mod plan;

pub use apply::{apply, revert, status, Saved};
pub use cpuset::CpuSet;
pub use host::Host;
pub use plan::{plan, Change, Options, Plan, Profile};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user (a NIC, a CPU list, a profile).
    #[error("{0}")]
    Input(String),
    /// A write the kernel refused (the plan's changes made in this run
    /// were undone).
    #[error("{0}")]
    Refused(String),
    /// The saved state file.
    #[error(transparent)]
    State(#[from] nearhost_state::StateError),
    /// The host could not be read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}
