//! Errors of the kernel layer. Every variant names the operation and the object it
//! was applied to, so the layers above can pass them on without re-wording.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel answered a netlink request with an error.
    #[error("{op}: {source}{}", ext_ack.as_deref().map(|m| format!(" (kernel: {m})")).unwrap_or_default())]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, when it sent one.
        ext_ack: Option<String>,
    },
    /// The netlink socket itself failed (open, send, receive, decode).
    #[error("netlink socket: {0}")]
    Socket(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a network namespace (expected an nsfs file such as /proc/PID/ns/net or /run/netns/NAME)")]
    NotNetns(String),
    #[error("no link named {0:?}")]
    NoSuchLink(String),
    #[error("{0}")]
    Unsupported(String),
}

impl KernelError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        KernelError::Io { what: what.into(), source }
    }

    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { source, .. } | KernelError::Io { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    /// What the kernel said, without the operation: the errno's text and
    /// its extended-ack message.
    pub fn reason(&self) -> String {
        match self {
            KernelError::Netlink { source, ext_ack: Some(m), .. } => {
                format!("{source} (kernel: {m})")
            }
            KernelError::Netlink { source, .. } | KernelError::Io { source, .. } => {
                source.to_string()
            }
            other => other.to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, KernelError::NoSuchLink(_))
            || matches!(
                self.errno(),
                Some(libc::ENODEV)
                    | Some(libc::ENOENT)
                    | Some(libc::ESRCH)
                    | Some(libc::EADDRNOTAVAIL)
            )
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
