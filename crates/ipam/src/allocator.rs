//! The pure allocator: given ranges, exclusions and what is taken, pick an address.
//!
//! It walks round-robin from the last address handed out, so a just-released
//! address is not reused at once (neighbours may still cache its old MAC). Every
//! loop is bounded by the number of reserved addresses and exclusions, never by the
//! size of the range, so a /64 costs the same as a /24.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{from_ord, ord, Range, RangeSet};
use crate::error::{IpamError, Result};

/// What the allocator may not hand out.
pub struct Taken<'a> {
    pub reserved: &'a BTreeSet<IpAddr>,
    pub exclude: &'a [IpNet],
}

impl Taken<'_> {
    /// Why `ip` can't be used in `range`, if it can't.
    fn blocker(&self, ip: IpAddr, range: &Range) -> Option<Blocker> {
        if let Some(net) = self.exclude.iter().find(|n| n.contains(&ip)) {
            return Some(Blocker::Excluded(ord(net.broadcast())));
        }
        if range.gateway == Some(ip) || self.reserved.contains(&ip) {
            return Some(Blocker::Single);
        }
        None
    }
}

enum Blocker {
    /// Skip to one past this address (the end of an excluded block).
    Excluded(u128),
    Single,
}

/// Picks a free address from `set`, starting after `last` (round-robin).
pub fn allocate<'s>(
    set: &'s RangeSet, taken: &Taken<'_>, last: Option<IpAddr>,
) -> Result<(IpAddr, &'s Range)> {
    let n = set.ranges.len();
    let start_idx = last.and_then(|l| set.ranges.iter().position(|r| r.contains(l)));
    let order: Vec<(usize, Option<u128>, Option<u128>)> = match (start_idx, last) {
        (Some(k), Some(l)) => {
            let l = ord(l);
            let mut v = vec![(k, Some(l.saturating_add(1)), None)];
            v.extend((1..n).map(|d| ((k + d) % n, None, None)));
            v.push((k, None, l.checked_sub(1)));
            v
        }
        _ => (0..n).map(|i| (i, None, None)).collect(),
    };
    for (i, lo, hi) in order {
        let r = &set.ranges[i];
        let lo = lo.unwrap_or(ord(r.start)).max(ord(r.start));
        let hi = hi.unwrap_or(ord(r.end)).min(ord(r.end));
        if let Some(ip) = scan(r, lo, hi, taken) {
            return Ok((ip, r));
        }
    }
    Err(IpamError::Exhausted { ranges: set.describe(), in_use: count_reserved(set, taken) })
}

fn scan(range: &Range, lo: u128, hi: u128, taken: &Taken<'_>) -> Option<IpAddr> {
    let v6 = range.subnet.addr().is_ipv6();
    let mut c = lo;
    while c <= hi {
        let ip = from_ord(c, v6);
        match taken.blocker(ip, range) {
            None => return Some(ip),
            Some(Blocker::Excluded(end)) => c = end.checked_add(1)?,
            Some(Blocker::Single) => c = c.checked_add(1)?,
        }
    }
    None
}

fn count_reserved(set: &RangeSet, taken: &Taken<'_>) -> usize {
    taken.reserved.iter().filter(|ip| set.range_of(**ip).is_some()).count()
}

/// Checks that a statically requested address may be handed out.
pub fn check_static<'s>(set: &'s RangeSet, ip: IpAddr, taken: &Taken<'_>) -> Result<&'s Range> {
    let range =
        set.range_of(ip).ok_or_else(|| IpamError::StaticOutside { ip, ranges: set.describe() })?;
    match taken.blocker(ip, range) {
        None => Ok(range),
        Some(Blocker::Excluded(_)) => Err(IpamError::StaticReserved { ip }),
        Some(Blocker::Single) if range.gateway == Some(ip) => Err(IpamError::StaticReserved { ip }),
        // reserved by someone: the caller knows who and reports it
        Some(Blocker::Single) => Err(IpamError::StaticTaken { ip, owner: String::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpamConfig;
    use proptest::prelude::*;
    use serde_json::json;

    fn set(v: serde_json::Value) -> RangeSet {
        IpamConfig::parse(&json!({"ranges": [v]})).unwrap().range_sets.remove(0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn skips_gateway_reserved_and_excluded() {
        let s = set(json!([{"subnet": "198.18.0.0/28", "gateway": "198.18.0.1"}]));
        let reserved: BTreeSet<IpAddr> = [ip("198.18.0.2")].into();
        let exclude: Vec<IpNet> =
            vec!["198.18.0.3/32".parse().unwrap(), "198.18.0.4/31".parse().unwrap()];
        let t = Taken { reserved: &reserved, exclude: &exclude };
        assert_eq!(allocate(&s, &t, None).unwrap().0, ip("198.18.0.6"));
    }

    #[test]
    fn round_robin_after_last_and_wraps() {
        let s = set(json!([{"subnet": "198.18.0.0/29"}]));
        let reserved = BTreeSet::new();
        let t = Taken { reserved: &reserved, exclude: &[] };
        assert_eq!(allocate(&s, &t, Some(ip("198.18.0.3"))).unwrap().0, ip("198.18.0.4"));
        // .6 is the last usable address of a /29: wrap to the start (.1 is the
        // default gateway)
        assert_eq!(allocate(&s, &t, Some(ip("198.18.0.6"))).unwrap().0, ip("198.18.0.2"));
    }

    #[test]
    fn exhausted_range_reports_it() {
        let s = set(json!([{"subnet": "198.18.0.0/30"}]));
        let reserved: BTreeSet<IpAddr> = [ip("198.18.0.2")].into();
        let t = Taken { reserved: &reserved, exclude: &[] };
        match allocate(&s, &t, Some(ip("198.18.0.2"))) {
            Err(IpamError::Exhausted { in_use, .. }) => assert_eq!(in_use, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multiple_ranges_in_one_set() {
        let s = set(json!([{"subnet": "198.18.0.0/30"}, {"subnet": "198.18.1.0/30"}]));
        let reserved: BTreeSet<IpAddr> = [ip("198.18.0.2")].into();
        let t = Taken { reserved: &reserved, exclude: &[] };
        let (got, r) = allocate(&s, &t, None).unwrap();
        assert_eq!(
            got,
            ip("198.18.1.2"),
            "first range full (gateway .1, .2 taken); .1 of the second is its gateway"
        );
        assert_eq!(r.subnet.to_string(), "198.18.1.0/30");
    }

    #[test]
    fn huge_v6_range_with_huge_exclusion_is_fast() {
        let s = set(json!([{"subnet": "2001:2::/64"}]));
        let reserved = BTreeSet::new();
        let exclude: Vec<IpNet> = vec!["2001:2::/65".parse().unwrap()];
        let t = Taken { reserved: &reserved, exclude: &exclude };
        assert_eq!(allocate(&s, &t, None).unwrap().0, ip("2001:2::8000:0:0:0"));
    }

    #[test]
    fn static_checks() {
        let s = set(
            json!([{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.20", "gateway": "198.18.0.1"}]),
        );
        let reserved: BTreeSet<IpAddr> = [ip("198.18.0.11")].into();
        let t = Taken { reserved: &reserved, exclude: &[] };
        assert!(check_static(&s, ip("198.18.0.12"), &t).is_ok());
        assert!(matches!(
            check_static(&s, ip("198.18.0.30"), &t),
            Err(IpamError::StaticOutside { .. })
        ));
        assert!(matches!(
            check_static(&s, ip("198.18.0.11"), &t),
            Err(IpamError::StaticTaken { .. })
        ));
    }

    proptest! {
        /// Allocating until exhaustion never hands out an address twice, never
        /// the gateway or an excluded one, and hands out every other one.
        #[test]
        fn no_address_handed_out_twice(prefix in 26u8..=29, excl in 0u8..8, start_last in proptest::option::of(0u8..60)) {
            let subnet = format!("198.18.0.0/{prefix}");
            let s = set(json!([{"subnet": subnet, "gateway": "198.18.0.1"}]));
            let exclude: Vec<IpNet> = vec![format!("198.18.0.{}/31", excl * 2).parse().unwrap()];
            let mut reserved = BTreeSet::new();
            let mut last = start_last.map(|o| ip(&format!("198.18.0.{o}")));
            let usable = (1u32 << (32 - prefix)) - 2;
            for _ in 0..usable {
                let t = Taken { reserved: &reserved, exclude: &exclude };
                match allocate(&s, &t, last) {
                    Ok((got, _)) => {
                        prop_assert!(!reserved.contains(&got));
                        prop_assert!(got != ip("198.18.0.1"));
                        prop_assert!(!exclude[0].contains(&got));
                        reserved.insert(got);
                        last = Some(got);
                    }
                    Err(IpamError::Exhausted { .. }) => break,
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            let blocked = (1..=usable).filter(|o| {
                let a = ip(&format!("198.18.0.{o}"));
                a == ip("198.18.0.1") || exclude[0].contains(&a)
            }).count();
            prop_assert_eq!(reserved.len(), usable as usize - blocked);
        }
    }
}
