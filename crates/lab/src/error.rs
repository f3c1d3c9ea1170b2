use nearhost_kernel::KernelError;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("a lab is already up ({0}); explore it, or remove it with `nearhost lab down`")]
    AlreadyUp(String),
    #[error("no lab is up (start one with `nearhost lab up` or run `nearhost demo`)")]
    NotUp,
    #[error("attaching the {datapath} container on {host}: {msg}")]
    Attach { datapath: String, host: String, msg: String },
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: KernelError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("measuring {datapath} ({kind}): {msg}")]
    Bench { datapath: String, kind: String, msg: String },
    #[error("interrupted by a signal; the lab has been taken down")]
    Interrupted,
    #[error(transparent)]
    State(#[from] nearhost_state::StateError),
    #[error("{0}")]
    Other(String),
}

impl LabError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io { what: what.into(), source }
    }

    pub fn kernel(what: impl Into<String>) -> impl FnOnce(KernelError) -> LabError {
        let what = what.into();
        move |source| LabError::Kernel { what, source }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
