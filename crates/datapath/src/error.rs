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
    /// A CHECK found the attachment differs from what ADD made.
    #[error("{0}")]
    CheckFailed(String),
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
