//! Sets of CPUs in the two notations the kernel uses: lists
//! (`/proc/irq/N/smp_affinity_list`, `node/nodeN/cpulist`: `0-3,8`) and
//! masks (`rx-N/rps_cpus`, `tx-N/xps_cpus`: comma-separated 32-bit groups of
//! hex digits, most significant first, `00000000,0003fdfe`).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CpuSet(BTreeSet<u32>);

/// The highest CPU number a set may hold (the kernel's NR_CPUS limit is 8192).
const MAX_CPU: u32 = 8191;

impl CpuSet {
    pub fn new() -> Self {
        CpuSet(BTreeSet::new())
    }

    pub fn of(cpus: impl IntoIterator<Item = u32>) -> Self {
        CpuSet(cpus.into_iter().collect())
    }

    /// A CPU list: `0-3,8,10-11`; empty or blank is the empty set.
    pub fn parse_list(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Input(format!("CPU list {s:?}: {why}"));
        let mut set = BTreeSet::new();
        for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let num = |t: &str| -> Result<u32, Error> {
                t.parse::<u32>().map_err(|_| bad(&format!("{t:?} is not a CPU number")))
            };
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(bad(&format!("range {lo}-{hi} runs backwards")));
            }
            if hi > MAX_CPU {
                return Err(bad(&format!("CPU {hi} is above the kernel's limit of {MAX_CPU}")));
            }
            set.extend(lo..=hi);
        }
        Ok(CpuSet(set))
    }

    /// A CPU mask as the kernel prints and reads it: 32-bit groups of 8 hex
    /// digits, most significant first, separated by commas.
    pub fn parse_mask(s: &str) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        let groups: Vec<&str> = s.trim().split(',').collect();
        for (i, g) in groups.iter().rev().enumerate() {
            let v = u32::from_str_radix(g, 16)
                .map_err(|_| Error::Input(format!("CPU mask {s:?}: {g:?} is not hexadecimal")))?;
            for bit in 0..32 {
                if v & (1 << bit) != 0 {
                    set.insert(i as u32 * 32 + bit);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// The mask for a machine of `ncpus` CPUs: as many 32-bit groups as its
    /// CPUs need (the study wrote `00000000,0003fdfe` for 36 CPUs).
    pub fn to_mask(&self, ncpus: u32) -> String {
        let top = self.0.iter().next_back().map_or(0, |c| c + 1).max(ncpus).max(1);
        let groups = top.div_ceil(32);
        (0..groups)
            .rev()
            .map(|g| {
                let v = self
                    .0
                    .iter()
                    .filter(|c| **c / 32 == g)
                    .fold(0u32, |acc, c| acc | 1 << (c % 32));
                format!("{v:08x}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The list form, with ranges: `1-8,10-17`.
    pub fn to_list(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut it = self.0.iter().copied().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end = it.next().unwrap_or(end);
            }
            out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        }
        out.join(",")
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }
    pub fn insert(&mut self, cpu: u32) -> bool {
        self.0.insert(cpu)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }
    pub fn minus(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }
    pub fn intersect(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }
    pub fn is_disjoint(&self, other: &CpuSet) -> bool {
        self.0.is_disjoint(&other.0)
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list())
    }
}

impl From<CpuSet> for String {
    fn from(s: CpuSet) -> String {
        s.to_list()
    }
}

impl TryFrom<String> for CpuSet {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        CpuSet::parse_list(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_studys_mask_is_cpus_1_to_8_and_10_to_17() {
        let s = CpuSet::parse_mask("00000000,0003fdfe").unwrap();
        assert_eq!(s.to_list(), "1-8,10-17");
        assert_eq!(s.to_mask(36), "00000000,0003fdfe");
        assert_eq!(CpuSet::parse_list("1-8,10-17").unwrap(), s);
    }

    #[test]
    fn masks_have_one_group_per_32_cpus() {
        assert_eq!(CpuSet::of([0]).to_mask(2), "00000001");
        assert_eq!(CpuSet::of([63]).to_mask(64), "80000000,00000000");
        assert_eq!(CpuSet::new().to_mask(8), "00000000");
        assert_eq!(CpuSet::parse_mask("0").unwrap(), CpuSet::new());
    }

    #[test]
    fn lists_round_trip_and_bad_ones_are_named() {
        for l in ["", "0", "0-3,8,10-11", "5,7,9"] {
            assert_eq!(CpuSet::parse_list(l).unwrap().to_list(), l);
        }
        let e = CpuSet::parse_list("3-1").unwrap_err().to_string();
        assert!(e.contains("\"3-1\"") && e.contains("backwards"), "{e}");
        let e = CpuSet::parse_list("a").unwrap_err().to_string();
        assert!(e.contains("\"a\" is not a CPU number"), "{e}");
        assert!(CpuSet::parse_list("0-9000").is_err());
        assert!(CpuSet::parse_mask("xyz").is_err());
    }
}
