//! NAT for the bridge datapath (Docker's default): masquerade of container
//! subnets and DNAT port mappings, kept in one nftables table whose rules never
//! change — only its sets and maps do, so concurrent ADDs can't duplicate rules.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_kernel::{netns, nft};

use crate::context::{Namespace, PortMapping};
use crate::error::{KernelContext, Result};

const TABLE: &str = "inet nearhost";

/// The table's skeleton. `add` of a table/set/chain is idempotent; the static
/// rules are flushed and re-added in the same transaction.
fn skeleton() -> String {
    format!(
        "add table {TABLE}
add set {TABLE} masq4 {{ type ipv4_addr; flags interval; }}
add set {TABLE} masq6 {{ type ipv6_addr; flags interval; }}
add map {TABLE} tcp4 {{ type inet_service : ipv4_addr . inet_service; }}
add map {TABLE} udp4 {{ type inet_service : ipv4_addr . inet_service; }}
add chain {TABLE} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
add chain {TABLE} prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}
flush chain {TABLE} postrouting
flush chain {TABLE} prerouting
flush chain {TABLE} output
add rule {TABLE} postrouting ip saddr @masq4 ip daddr != @masq4 masquerade
add rule {TABLE} postrouting ip6 saddr @masq6 ip6 daddr != @masq6 masquerade
add rule {TABLE} prerouting fib daddr type local dnat ip to tcp dport map @tcp4
add rule {TABLE} prerouting fib daddr type local dnat ip to udp dport map @udp4
add rule {TABLE} output fib daddr type local dnat ip to tcp dport map @tcp4
add rule {TABLE} output fib daddr type local dnat ip to udp dport map @udp4
"
    )
}

/// Masquerades traffic from `subnets` leaving for anywhere but a container subnet,
/// and installs `mappings` to `container_ip`. One `nft` run, one transaction.
pub fn ensure(
    host: &Namespace, subnets: &[IpNet], mappings: &[PortMapping], container_ip: Option<IpAddr>,
) -> Result<()> {
    let mut script = skeleton();
    for net in subnets {
        let set = if net.addr().is_ipv6() { "masq6" } else { "masq4" };
        script.push_str(&format!("add element {TABLE} {set} {{ {} }}\n", net.trunc()));
    }
    if let Some(IpAddr::V4(ip)) = container_ip {
        for m in mappings {
            script.push_str(&format!(
                "add element {TABLE} {}4 {{ {} : {ip} . {} }}\n",
                m.protocol, m.host_port, m.container_port
            ));
        }
    }
    netns::run_in(&host.ns, || nft::apply(&script))
        .and_then(|r| r)
        .ctx(|| "install NAT rules".into())
}

/// Removes the port mappings that point at `container_ip` (others are kept).
pub fn remove_mappings(
    host: &Namespace, mappings: &[PortMapping], container_ip: Option<IpAddr>,
) -> Result<()> {
    if mappings.is_empty() {
        return Ok(());
    }
    let current =
        netns::run_in(&host.ns, || -> nearhost_kernel::Result<Vec<(String, u16, String)>> {
            let mut found = Vec::new();
            for proto in ["tcp", "udp"] {
                let Some(json) =
                    nft::list_json(&["list", "map", "inet", "nearhost", &format!("{proto}4")])?
                else {
                    continue;
                };
                found.extend(
                    map_elements(&json).into_iter().map(|(port, ip)| (proto.to_string(), port, ip)),
                );
            }
            Ok(found)
        })
        .and_then(|r| r)
        .ctx(|| "read port mappings".into())?;
    let mut script = String::new();
    for m in mappings {
        let present = current.iter().any(|(p, port, ip)| {
            *p == m.protocol
                && *port == m.host_port
                && container_ip.is_none_or(|c| c.to_string() == *ip)
        });
        if present {
            script.push_str(&format!(
                "delete element {TABLE} {}4 {{ {} }}\n",
                m.protocol, m.host_port
            ));
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    netns::run_in(&host.ns, || nft::apply(&script))
        .and_then(|r| r)
        .ctx(|| "remove port mappings".into())
}

/// `(host port, container ip)` pairs of an `nft -j list map` answer.
fn map_elements(json: &str) -> Vec<(u16, String)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for elem in item["map"]["elem"].as_array().into_iter().flatten() {
            let port = elem[0].as_u64().and_then(|p| u16::try_from(p).ok());
            let ip = elem[1]["concat"][0].as_str();
            if let (Some(port), Some(ip)) = (port, ip) {
                out.push((port, ip.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_elements_parse() {
        let json = r#"{"nftables":[{"metainfo":{}},{"map":{"family":"inet","name":"tcp4","table":"nearhost","type":"inet_service","map":["ipv4_addr","inet_service"],"elem":[[8080,{"concat":["198.18.0.5",80]}]]}}]}"#;
        assert_eq!(map_elements(json), vec![(8080, "198.18.0.5".to_string())]);
        assert!(map_elements("{}").is_empty());
    }

    #[test]
    fn skeleton_rules_are_flushed_before_being_added() {
        let s = skeleton();
        let flush = s.find("flush chain inet nearhost postrouting").unwrap();
        let add = s.find("add rule inet nearhost postrouting").unwrap();
        assert!(flush < add);
    }
}
