//! Errors of the measurement library. Every variant a user can cause names the
//! flag or value that was wrong and what to do about it.
//!
//! Operating-system errors are part of each message (fields named `error`,
//! not `source`), so one line says everything and a caller printing the
//! error chain does not repeat them.

use std::io;
use std::net::SocketAddr;

/// Everything that can stop a measurement from running.
///
/// Problems *during* a run (a reset connection, a malformed response, a
/// timeout) do not end the run: they are counted in the report instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is out of range or inconsistent with another one.
    #[error("invalid {flag} value {value:?}: {reason}")]
    InvalidArgument {
        /// The command-line flag the setting comes from (e.g. `--connections`).
        flag: &'static str,
        /// The rejected value, as the user wrote it or as it was computed.
        value: String,
        /// Why it was rejected and what is accepted instead.
        reason: String,
    },

    /// The target refused or rejected the connection.
    #[error("cannot connect to {addr} (--target): {error}{hint}")]
    Connect {
        /// The target address.
        addr: SocketAddr,
        /// The operating system's error.
        error: io::Error,
        /// What to check next (starts with "; " or is empty).
        hint: &'static str,
    },

    /// No connection was established within the connect timeout.
    #[error(
        "connecting to {addr} (--target) timed out after {timeout_s} s (--timeout): \
         the address does not answer; check the address and the route to it"
    )]
    ConnectTimeout {
        /// The target address.
        addr: SocketAddr,
        /// The timeout that expired, in seconds.
        timeout_s: f64,
    },

    /// The peer accepted the connection but does not speak the bench protocol.
    #[error(
        "{addr} (--target) is not a `nearhost bench serve` endpoint: {detail} \
         (for an HTTP server use `rate --http`)"
    )]
    Handshake {
        /// The target address.
        addr: SocketAddr,
        /// What went wrong in the handshake.
        detail: String,
    },

    /// The UDP target never answered the probe datagram.
    #[error(
        "no UDP reply from {addr} (--target) within {timeout_s} s (--timeout): \
         is `nearhost bench serve` listening there?"
    )]
    NoUdpReply {
        /// The target address.
        addr: SocketAddr,
        /// The timeout that expired, in seconds.
        timeout_s: f64,
    },

    /// The server could not bind or listen.
    #[error("cannot listen on {addr} (--listen): {error}")]
    Listen {
        /// The address given to `--listen`.
        addr: SocketAddr,
        /// The operating system's error.
        error: io::Error,
    },

    /// Pinning a thread to a CPU failed.
    #[error("cannot pin a thread to CPU {cpu} (--cpus): {error}")]
    Affinity {
        /// The CPU number.
        cpu: usize,
        /// The operating system's error.
        error: nix::Error,
    },

    /// Any other operating-system failure, with what was being done.
    #[error("{context}: {error}")]
    Io {
        /// What the tool was doing.
        context: String,
        /// The operating system's error.
        error: io::Error,
    },

    /// A measurement thread panicked (a bug: please report it).
    #[error("a measurement thread panicked (this is a bug in nearhost bench)")]
    WorkerPanicked,
}

impl BenchError {
    /// Shorthand for [`BenchError::InvalidArgument`].
    pub(crate) fn invalid(
        flag: &'static str, value: impl ToString, reason: impl Into<String>,
    ) -> Self {
        BenchError::InvalidArgument { flag, value: value.to_string(), reason: reason.into() }
    }

    /// Shorthand for [`BenchError::Io`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        BenchError::Io { context: context.into(), error: source }
    }

    /// True when the user can fix this by changing the command line
    /// (the CLI exits with code 2 for these).
    pub fn is_usage_error(&self) -> bool {
        matches!(self, BenchError::InvalidArgument { .. })
    }
}
