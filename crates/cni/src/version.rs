//! CNI spec versions: which we speak, and what each one allows.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

pub const LATEST: SpecVersion = SpecVersion::V1_1_0;

pub const SUPPORTED: &[SpecVersion] = &[
    SpecVersion::V0_3_0,
    SpecVersion::V0_3_1,
    SpecVersion::V0_4_0,
    SpecVersion::V1_0_0,
    SpecVersion::V1_1_0,
];

impl SpecVersion {
    pub fn parse(text: &str) -> Option<Self> {
        SUPPORTED.iter().copied().find(|v| v.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// `ips[].version` exists before 1.0.0.
    pub fn ips_have_version(self) -> bool {
        self < SpecVersion::V1_0_0
    }

    /// CHECK arrived in 0.4.0.
    pub fn has_check(self) -> bool {
        self >= SpecVersion::V0_4_0
    }

    /// STATUS, GC and `interfaces[].mtu` arrived in 1.1.0.
    pub fn is_1_1(self) -> bool {
        self >= SpecVersion::V1_1_0
    }

    pub fn supported_list() -> Vec<&'static str> {
        SUPPORTED.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
