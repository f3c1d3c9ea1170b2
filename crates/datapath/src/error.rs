use nearhost_kernel::KernelError;

/// What can go wrong in a datapath driver. The CNI front end maps each kind to
/// its error code; the message always names the field, interface or value.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The network config is wrong (`field` is its JSON name, e.g. `mtu`).
    #[error("{field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// The request conflicts with what exists (e.g. the interface name is taken).
    #[error("{0}")]
    Conflict(String),
    /// The kernel lacks a feature (module not built, not loadable).
    #[error("{0}")]
    Unsupported(String),
    /// A shared resource is exhausted for now (no free SR-IOV VF): retry later.
    #[error("{0}")]
    Busy(String),
    /// The driver's state (e.g. the SR-IOV claims file) could not be read or written.
    #[error(transparent)]
    State(#[from] nearhost_state::StateError),
    /// A CHECK found the attachment differs from what ADD made.
    #[error("{0}")]
    CheckFailed(String),
    /// Teardown went on past a failure and failed again: the first failure and
    /// the others' messages.
    #[error("{first}; also: {}", rest.join("; also: "))]
    Several { first: Box<DatapathError>, rest: Vec<String> },
    #[error("{context}: {source}")]
    Kernel {
        context: String,
        #[source]
        source: KernelError,
    },
}

impl DatapathError {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DatapathError::InvalidConfig { field: field.into(), reason: reason.into() }
    }
}

/// The outcome of a teardown that kept going past failures: `Ok` when none
/// failed, else the first failure with the others' messages.
pub fn join(mut errors: Vec<DatapathError>) -> Result<()> {
    if errors.len() <= 1 {
        return errors.pop().map_or(Ok(()), Err);
    }
    let first = Box::new(errors.remove(0));
    Err(DatapathError::Several { first, rest: errors.iter().map(ToString::to_string).collect() })
}

/// Adds a context line to kernel errors: `.ctx(|| "create macvlan on eth1")`.
pub trait KernelContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, DatapathError>;
}

impl<T> KernelContext<T> for Result<T, KernelError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, DatapathError> {
        self.map_err(|source| DatapathError::Kernel { context: context(), source })
    }
}

pub type Result<T, E = DatapathError> = std::result::Result<T, E>;
