//! CNI errors: a code from the spec (or ours, ≥ 100), a message that names the
//! field and value, and optional details. Encoded as the spec's error JSON.

use nearhost_datapath::DatapathError;
use nearhost_ipam::IpamError;
use serde_json::{json, Value};

/// Error codes: 1–99 are the spec's; 100 and above are nearhost's own.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    pub const RANGE_EXHAUSTED: u32 = 100;
    pub const ADDRESS_TAKEN: u32 = 101;
    pub const ADDRESS_NOT_ALLOWED: u32 = 102;
    pub const INTERFACE_CONFLICT: u32 = 103;
    pub const KERNEL_UNSUPPORTED: u32 = 104;
    pub const KERNEL_FAILURE: u32 = 105;
    pub const CHECK_MISMATCH: u32 = 106;
    pub const DELEGATE_FAILED: u32 = 107;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: None }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn config(field: &str, reason: impl std::fmt::Display) -> Self {
        CniError::new(code::INVALID_CONFIG, format!("{field}: {reason}"))
    }

    pub fn env(var: &str, reason: impl std::fmt::Display) -> Self {
        CniError::new(code::INVALID_ENV, format!("{var}: {reason}"))
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if let Some(d) = &self.details {
            v["details"] = json!(d);
        }
        v
    }
}

impl From<DatapathError> for CniError {
    fn from(e: DatapathError) -> Self {
        let details = match &e {
            DatapathError::Kernel { source, .. } => Some(format!("{source:?}")),
            _ => None,
        };
        CniError { code: datapath_code(&e), msg: e.to_string(), details }
    }
}

fn datapath_code(e: &DatapathError) -> u32 {
    match e {
        DatapathError::InvalidConfig { .. } => code::INVALID_CONFIG,
        DatapathError::Conflict(_) => code::INTERFACE_CONFLICT,
        DatapathError::Unsupported(_) => code::KERNEL_UNSUPPORTED,
        DatapathError::Busy(_) => code::TRY_AGAIN_LATER,
        DatapathError::CheckFailed(_) => code::CHECK_MISMATCH,
        DatapathError::State(_) => code::IO_FAILURE,
        DatapathError::Several { first, .. } => datapath_code(first),
        DatapathError::Kernel { .. } => code::KERNEL_FAILURE,
    }
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        let code = match &e {
            IpamError::InvalidConfig { .. } => code::INVALID_CONFIG,
            IpamError::Exhausted { .. } => code::RANGE_EXHAUSTED,
            IpamError::StaticTaken { .. } => code::ADDRESS_TAKEN,
            IpamError::StaticOutside { .. } | IpamError::StaticReserved { .. } => {
                code::ADDRESS_NOT_ALLOWED
            }
            IpamError::LockTimeout { .. }
            | IpamError::Unavailable(_)
            | IpamError::Unconfirmed(_) => code::TRY_AGAIN_LATER,
            IpamError::Corrupt { .. } | IpamError::Io { .. } => code::IO_FAILURE,
        };
        CniError::new(code, e.to_string())
    }
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;
