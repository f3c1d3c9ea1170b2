//! The `ipam` section of a network config, parsed and validated.
//!
//! ```json
//! "ipam": {"type": "nearhost",
//!          "ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10",
//!                       "rangeEnd": "198.18.0.200", "gateway": "198.18.0.1"}]],
//!          "routes": [{"dst": "0.0.0.0/0"}], "exclude": ["198.18.0.64/28"],
//!          "dataDir": "/var/lib/nearhost"}
//! ```

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{IpamError, Result};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/nearhost";

/// One contiguous range inside a subnet. Bounds are inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: Option<IpAddr>,
}

/// The ranges one address is taken from (all of one family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub ranges: Vec<Range>,
}

impl RangeSet {
    pub fn is_v6(&self) -> bool {
        self.ranges.first().is_some_and(|r| r.subnet.addr().is_ipv6())
    }

    /// The range that contains `ip`, if any.
    pub fn range_of(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// A stable identifier (for the round-robin cursor in the state file).
    pub fn id(&self) -> String {
        self.ranges.iter().map(|r| format!("{}-{}", r.start, r.end)).collect::<Vec<_>>().join(",")
    }

    pub fn describe(&self) -> String {
        self.ranges.iter().map(|r| format!("{}..{}", r.start, r.end)).collect::<Vec<_>>().join(", ")
    }
}

impl Range {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip) && ord(ip) >= ord(self.start) && ord(ip) <= ord(self.end)
    }
}

/// A route handed to the container, as in the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The validated `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<RouteSpec>,
    pub exclude: Vec<IpNet>,
    pub data_dir: PathBuf,
    /// A cluster pool (agent-managed blocks) instead of static ranges.
    pub pool: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    routes: Vec<serde_json::Value>,
    #[serde(default)]
    exclude: Vec<String>,
    data_dir: Option<PathBuf>,
    pool: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

impl IpamConfig {
    /// Parses and validates the `ipam` object. Every error names its field.
    pub fn parse(value: &serde_json::Value) -> Result<Self> {
        let raw: RawIpam = serde_json::from_value(value.clone())
            .map_err(|e| IpamError::config("ipam", e.to_string()))?;
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if !data_dir.is_absolute() {
            return Err(IpamError::config(
                "ipam.dataDir",
                format!("{:?} must be an absolute path", data_dir.display()),
            ));
        }
        if raw.pool.is_some() && !raw.ranges.is_empty() {
            return Err(IpamError::config(
                "ipam.pool",
                "give either \"pool\" (cluster blocks) or \"ranges\", not both",
            ));
        }
        if let Some(pool) = &raw.pool {
            if pool.is_empty()
                || !pool.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(IpamError::config(
                    "ipam.pool",
                    format!("{pool:?} is not a valid pool name (letters, digits, - _ .)"),
                ));
            }
        }
        if raw.pool.is_none() && raw.ranges.is_empty() {
            return Err(IpamError::config(
                "ipam.ranges",
                "at least one range set is required (or \"pool\")",
            ));
        }
        let mut range_sets = Vec::new();
        for (i, set) in raw.ranges.iter().enumerate() {
            range_sets.push(parse_set(i, set)?);
        }
        for (i, a) in range_sets.iter().enumerate() {
            for b in &range_sets[..i] {
                if a.is_v6() == b.is_v6() {
                    return Err(IpamError::config(
                        format!("ipam.ranges[{i}]"),
                        format!("a second IPv{} range set; give one set per family (add more ranges inside the set instead)", if a.is_v6() { 6 } else { 4 }),
                    ));
                }
            }
        }
        let exclude = raw
            .exclude
            .iter()
            .enumerate()
            .map(|(i, e)| {
                parse_net_or_ip(e).map_err(|r| {
                    IpamError::config(format!("ipam.exclude[{i}]"), format!("{e:?}: {r}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let routes = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| parse_route(i, r))
            .collect::<Result<Vec<_>>>()?;
        Ok(IpamConfig { range_sets, routes, exclude, data_dir, pool: raw.pool })
    }
}

fn parse_route(i: usize, v: &serde_json::Value) -> Result<RouteSpec> {
    let field = format!("ipam.routes[{i}]");
    let dst = v
        .get("dst")
        .and_then(|d| d.as_str())
        .ok_or_else(|| IpamError::config(&field, "\"dst\" is required"))?;
    let dst: IpNet = dst
        .parse()
        .map_err(|_| IpamError::config(format!("{field}.dst"), format!("{dst:?} is not a CIDR")))?;
    let gw = match v.get("gw").and_then(|g| g.as_str()) {
        None => None,
        Some(g) => {
            let ip: IpAddr = g.parse().map_err(|_| {
                IpamError::config(format!("{field}.gw"), format!("{g:?} is not an IP address"))
            })?;
            if ip.is_ipv6() != dst.addr().is_ipv6() {
                return Err(IpamError::config(
                    format!("{field}.gw"),
                    format!("{g} is not of the same family as dst {dst}"),
                ));
            }
            Some(ip)
        }
    };
    Ok(RouteSpec { dst: dst.trunc(), gw })
}

fn parse_set(i: usize, set: &[RawRange]) -> Result<RangeSet> {
    if set.is_empty() {
        return Err(IpamError::config(format!("ipam.ranges[{i}]"), "empty range set"));
    }
    let mut ranges: Vec<Range> = Vec::new();
    for (j, raw) in set.iter().enumerate() {
        let r = parse_range(&format!("ipam.ranges[{i}][{j}]"), raw)?;
        if let Some(first) = ranges.first() {
            if first.subnet.addr().is_ipv6() != r.subnet.addr().is_ipv6() {
                return Err(IpamError::config(
                    format!("ipam.ranges[{i}][{j}].subnet"),
                    "mixes IPv4 and IPv6 in one range set; use one set per family",
                ));
            }
        }
        if let Some(other) =
            ranges.iter().find(|o| ord(r.start) <= ord(o.end) && ord(o.start) <= ord(r.end))
        {
            return Err(IpamError::config(
                format!("ipam.ranges[{i}][{j}]"),
                format!("overlaps {}..{}", other.start, other.end),
            ));
        }
        ranges.push(r);
    }
    Ok(RangeSet { ranges })
}

fn parse_range(field: &str, raw: &RawRange) -> Result<Range> {
    let subnet_text = raw
        .subnet
        .as_deref()
        .ok_or_else(|| IpamError::config(format!("{field}.subnet"), "is required"))?;
    let subnet: IpNet = subnet_text.parse().map_err(|_| {
        IpamError::config(
            format!("{field}.subnet"),
            format!("{subnet_text:?} is not a CIDR (e.g. 198.18.0.0/24)"),
        )
    })?;
    if subnet.addr() != subnet.network() {
        return Err(IpamError::config(
            format!("{field}.subnet"),
            format!("{subnet_text} has host bits set; did you mean {}?", subnet.trunc()),
        ));
    }
    let (first, last) = usable_bounds(&subnet);
    let parse_in = |name: &str, text: &Option<String>| -> Result<Option<IpAddr>> {
        let Some(t) = text else { return Ok(None) };
        let ip: IpAddr = t.parse().map_err(|_| {
            IpamError::config(format!("{field}.{name}"), format!("{t:?} is not an IP address"))
        })?;
        if !subnet.contains(&ip) {
            return Err(IpamError::config(
                format!("{field}.{name}"),
                format!("{ip} is outside subnet {subnet}"),
            ));
        }
        Ok(Some(ip))
    };
    let start = parse_in("rangeStart", &raw.range_start)?.unwrap_or(first);
    let end = parse_in("rangeEnd", &raw.range_end)?.unwrap_or(last);
    // As host-local: the gateway defaults to the subnet's first address, which
    // is then never handed to a container.
    let gateway = parse_in("gateway", &raw.gateway)?.or(Some(first));
    for (name, ip) in [("rangeStart", start), ("rangeEnd", end)] {
        if ord(ip) < ord(first) || ord(ip) > ord(last) {
            return Err(IpamError::config(
                format!("{field}.{name}"),
                format!("{ip} is the network or broadcast address of {subnet}"),
            ));
        }
    }
    if ord(start) > ord(end) {
        return Err(IpamError::config(
            format!("{field}.rangeEnd"),
            format!("{end} is before rangeStart {start}"),
        ));
    }
    Ok(Range { subnet, start, end, gateway })
}

/// First and last assignable address of a subnet (IPv4 skips network and
/// broadcast except for /31 and /32; IPv6 skips the subnet-router anycast address).
pub fn usable_bounds(subnet: &IpNet) -> (IpAddr, IpAddr) {
    let net = ord(subnet.network());
    let bcast = ord(subnet.broadcast());
    let (lo, hi) = match subnet {
        IpNet::V4(n) if n.prefix_len() >= 31 => (net, bcast),
        IpNet::V4(_) => (net + 1, bcast - 1),
        IpNet::V6(n) if n.prefix_len() == 128 => (net, bcast),
        IpNet::V6(_) => (net + 1, bcast),
    };
    (from_ord(lo, subnet.addr().is_ipv6()), from_ord(hi, subnet.addr().is_ipv6()))
}

fn parse_net_or_ip(text: &str) -> std::result::Result<IpNet, &'static str> {
    if let Ok(n) = text.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| "not an IP address or CIDR")
}

/// An address as an integer, for range arithmetic.
pub fn ord(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn from_ord(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_field(v: serde_json::Value) -> String {
        match IpamConfig::parse(&v) {
            Err(IpamError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_cover_the_usable_subnet() {
        let c = IpamConfig::parse(&json!({"ranges": [[{"subnet": "198.18.0.0/24"}]]})).unwrap();
        let r = &c.range_sets[0].ranges[0];
        assert_eq!(r.start, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.end, "198.18.0.254".parse::<IpAddr>().unwrap());
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(r.gateway, Some("198.18.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn dual_stack_is_two_sets() {
        let c = IpamConfig::parse(
            &json!({"ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": "2001:2::/64"}]]}),
        )
        .unwrap();
        assert!(!c.range_sets[0].is_v6());
        assert!(c.range_sets[1].is_v6());
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": "198.19.0.0/24"}]]})
            ),
            "ipam.ranges[1]"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            err_field(json!({"ranges": [[{"subnet": "198.18.0.0/33"}]]})),
            "ipam.ranges[0][0].subnet"
        );
        assert_eq!(
            err_field(json!({"ranges": [[{"subnet": "198.18.0.5/24"}]]})),
            "ipam.ranges[0][0].subnet"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": "198.19.0.1"}]]})
            ),
            "ipam.ranges[0][0].rangeStart"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.9", "rangeEnd": "198.18.0.3"}]]})
            ),
            "ipam.ranges[0][0].rangeEnd"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24", "rangeEnd": "198.18.0.255"}]]})
            ),
            "ipam.ranges[0][0].rangeEnd"
        );
        assert_eq!(
            err_field(json!({"ranges": [[{"subnet": "198.18.0.0/24", "gateway": "x"}]]})),
            "ipam.ranges[0][0].gateway"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24"}, {"subnet": "2001:2::/64"}]]})
            ),
            "ipam.ranges[0][1].subnet"
        );
        assert_eq!(
            err_field(json!({"ranges": [[{"subnet": "198.18.0.0/24"}]], "exclude": ["nope"]})),
            "ipam.exclude[0]"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0", "gw": "2001:2::1"}]})
            ),
            "ipam.routes[0].gw"
        );
        assert_eq!(err_field(json!({"ranges": []})), "ipam.ranges");
        assert_eq!(
            err_field(json!({"ranges": [[{"subnet": "198.18.0.0/24"}]], "dataDir": "relative"})),
            "ipam.dataDir"
        );
        assert_eq!(
            err_field(
                json!({"ranges": [[{"subnet": "198.18.0.0/24"}, {"subnet": "198.18.0.0/25"}]]})
            ),
            "ipam.ranges[0][1]"
        );
    }

    #[test]
    fn small_subnets() {
        let (a, b) = usable_bounds(&"198.18.0.4/31".parse().unwrap());
        assert_eq!((a.to_string(), b.to_string()), ("198.18.0.4".into(), "198.18.0.5".into()));
        let (a, b) = usable_bounds(&"2001:2::/126".parse().unwrap());
        assert_eq!((a.to_string(), b.to_string()), ("2001:2::1".into(), "2001:2::3".into()));
    }
}
