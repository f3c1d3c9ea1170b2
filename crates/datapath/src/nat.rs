//! NAT for the bridge datapath (Docker's default): masquerade of container
//! subnets, kept in sets of one nftables table whose base rules never change,
//! and DNAT port mappings: one rule per mapping and address family in the
//! `portmap` chain, matching the mapping's host address when it has one and
//! tagged (rule comment) with the attachment it belongs to, so DEL removes its
//! own rules and nobody else's. Port-mapping changes hold a node-wide lock:
//! ADD checks that the port is free before adding. Two static rules serve
//! hostReach (see `host_reach`): a DNATed connection that enters or leaves by
//! a hostReach veth (`nhh*`) is masqueraded, so its replies come back through
//! the host.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use nearhost_kernel::{netns, nft};

use crate::context::{Namespace, PortMapping};
use crate::error::{DatapathError, KernelContext, Result};

const TABLE: &str = "inet nearhost";
const CHAIN: &str = "portmap";

/// How long a port-mapping change waits for another plugin process's.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The table's skeleton. `add` of a table/set/chain is idempotent; the static
/// rules are flushed and re-added in the same transaction. The `portmap`
/// chain's per-attachment rules are kept.
fn skeleton() -> String {
    format!(
        "add table {TABLE}
add set {TABLE} masq4 {{ type ipv4_addr; flags interval; }}
add set {TABLE} masq6 {{ type ipv6_addr; flags interval; }}
add chain {TABLE} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
add chain {TABLE} prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain {TABLE} {CHAIN}
flush chain {TABLE} postrouting
flush chain {TABLE} prerouting
flush chain {TABLE} output
add rule {TABLE} postrouting ip saddr @masq4 ip daddr != @masq4 masquerade
add rule {TABLE} postrouting ip6 saddr @masq6 ip6 daddr != @masq6 masquerade
add rule {TABLE} prerouting fib daddr type local jump {CHAIN}
add rule {TABLE} postrouting ct status dnat iifname \"{reach}*\" masquerade
add rule {TABLE} postrouting ct status dnat oifname \"{reach}*\" masquerade
add rule {TABLE} output fib daddr type local jump {CHAIN}
",
        reach = crate::host_reach::HOST_PREFIX
    )
}

/// The table with its static rules, for datapaths with no subnet to
/// masquerade and no port to map (hostReach's Service reply path).
pub fn ensure_table(host: &Namespace) -> Result<()> {
    apply(host, &skeleton(), "install NAT rules")
}

/// The tag of an attachment's rules: a stable hash (FNV-1a, 64 bits) of
/// network, container ID and ifname, so the comment stays short and needs no
/// quoting whatever the names hold.
pub fn tag(network: &str, container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [network, container_id, ifname].join("\0").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("nh-{h:016x}")
}

/// One port mapping for one address family, as a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Its mapping's index in `runtimeConfig.portMappings`.
    index: usize,
    protocol: String,
    host_port: u16,
    /// `None`: every local address of the family.
    host_ip: Option<IpAddr>,
    target: IpAddr,
    container_port: u16,
}

impl Rule {
    fn family(&self) -> &'static str {
        if self.target.is_ipv6() {
            "ip6"
        } else {
            "ip"
        }
    }

    /// What two mappings must not share: protocol, port, family, address.
    fn key(&self) -> String {
        let ip = self.host_ip.map_or_else(|| "any".to_string(), |ip| ip.to_string());
        format!("{} {} {} {ip}", self.protocol, self.host_port, self.family())
    }

    fn overlaps(&self, other_key: &str) -> bool {
        let mine = self.key();
        let (a, b): (Vec<&str>, Vec<&str>) =
            (mine.split(' ').collect(), other_key.split(' ').collect());
        a.len() == 4
            && b.len() == 4
            && a[..3] == b[..3]
            && (a[3] == b[3] || a[3] == "any" || b[3] == "any")
    }

    fn add(&self, tag: &str) -> String {
        let (fam, nfproto) = match self.target {
            IpAddr::V4(_) => ("ip", "ipv4"),
            IpAddr::V6(_) => ("ip6", "ipv6"),
        };
        let daddr = self.host_ip.map(|ip| format!("{fam} daddr {ip} ")).unwrap_or_default();
        let to = match self.target {
            IpAddr::V4(ip) => format!("{ip}:{}", self.container_port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.container_port),
        };
        format!(
            "add rule {TABLE} {CHAIN} meta nfproto {nfproto} {daddr}{proto} dport {port} dnat {fam} to {to} comment \"{tag} {key}\"\n",
            proto = self.protocol,
            port = self.host_port,
            key = self.key(),
        )
    }
}

/// The rules for `mappings` to a container with `addresses`: for a mapping's
/// `hostIP` one rule of its family, else one per family the container has.
/// A hostIP the container cannot be reached by is a config error.
fn plan(mappings: &[PortMapping], addresses: &[IpAddr]) -> Result<Vec<Rule>> {
    let of_family = |v6: bool| addresses.iter().copied().find(|a| a.is_ipv6() == v6);
    let mut rules = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        let field = format!("runtimeConfig.portMappings[{i}].hostIP");
        let families: Vec<bool> = match m.host_ip {
            Some(ip) if ip.is_loopback() || ip.is_multicast() => {
                return Err(DatapathError::config(
                    field,
                    format!("{ip} is not supported: map the port on an address of the host's interfaces (the kernel does not route loopback traffic to a container)"),
                ))
            }
            Some(ip) if ip.is_unspecified() => vec![false, true],
            Some(ip) => vec![ip.is_ipv6()],
            None => vec![false, true],
        };
        let host_ip = m.host_ip.filter(|ip| !ip.is_unspecified());
        let mut any = false;
        for v6 in families {
            let Some(target) = of_family(v6) else { continue };
            any = true;
            let container_port = m.container_port;
            let protocol = m.protocol.clone();
            let host_port = m.host_port;
            rules.push(Rule { index: i, protocol, host_port, host_ip, target, container_port });
        }
        if !any {
            let what = match m.host_ip {
                Some(ip) => format!("{ip}: the container has no address of its family"),
                None => "the container has no address to map the port to".to_string(),
            };
            let field = match m.host_ip {
                Some(_) => field,
                None => format!("runtimeConfig.portMappings[{i}]"),
            };
            return Err(DatapathError::config(field, what));
        }
    }
    Ok(rules)
}

/// The `portmap` rules as `(handle, comment)`; none when there is no table.
fn current(host: &Namespace) -> Result<Vec<(u64, String)>> {
    let json = netns::run_in(&host.ns, || {
        nft::list_json(&["-a", "list", "chain", "inet", "nearhost", CHAIN])
    })
    .and_then(|r| r)
    .ctx(|| "read port mappings".into())?;
    Ok(json.map(|j| rule_comments(&j)).unwrap_or_default())
}

fn lock() -> Result<nearhost_state::Lock> {
    let path = crate::claims::node_dir().join("portmaps.lock");
    Ok(nearhost_state::lock(&path, LOCK_TIMEOUT)?)
}

/// Masquerades traffic from `subnets` leaving for anywhere but a container
/// subnet, and installs `mappings` to the container at `addresses` under
/// `tag` (replacing rules an earlier ADD of the same attachment left).
pub fn ensure(
    host: &Namespace, subnets: &[IpNet], mappings: &[PortMapping], addresses: &[IpAddr], tag: &str,
) -> Result<()> {
    let rules = plan(mappings, addresses)?;
    let mut script = skeleton();
    for net in subnets {
        let set = if net.addr().is_ipv6() { "masq6" } else { "masq4" };
        script.push_str(&format!("add element {TABLE} {set} {{ {} }}\n", net.trunc()));
    }
    apply(host, &script, "install NAT rules")?;
    if rules.is_empty() {
        return Ok(());
    }
    let _lock = lock()?;
    let mut script = String::new();
    for (handle, comment) in current(host)? {
        let Some((owner, key)) = comment.split_once(' ') else { continue };
        if owner == tag {
            script.push_str(&format!("delete rule {TABLE} {CHAIN} handle {handle}\n"));
        } else if let Some(r) = rules.iter().find(|r| r.overlaps(key)) {
            return Err(DatapathError::config(
                format!("runtimeConfig.portMappings[{}].hostPort", r.index),
                format!(
                    "{} {} is already mapped to another container ({key})",
                    r.protocol, r.host_port
                ),
            ));
        }
    }
    for r in &rules {
        script.push_str(&r.add(tag));
    }
    apply(host, &script, "install port mappings")
}

/// Removes the port mappings of the attachment tagged `tag` (others are kept).
pub fn remove_mappings(host: &Namespace, tag: &str) -> Result<()> {
    let _lock = lock()?;
    let script: String = current(host)?
        .into_iter()
        .filter(|(_, comment)| comment.split(' ').next() == Some(tag))
        .map(|(handle, _)| format!("delete rule {TABLE} {CHAIN} handle {handle}\n"))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    apply(host, &script, "remove port mappings")
}

fn apply(host: &Namespace, script: &str, what: &str) -> Result<()> {
    netns::run_in(&host.ns, || nft::apply(script)).and_then(|r| r).ctx(|| what.to_string())
}

/// `(handle, comment)` of the rules in an `nft -j -a list chain` answer.
fn rule_comments(json: &str) -> Vec<(u64, String)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let items = v["nftables"].as_array().into_iter().flatten();
    items
        .filter_map(|item| {
            let rule = &item["rule"];
            Some((rule["handle"].as_u64()?, rule["comment"].as_str()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(port: u16, host_ip: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: port,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: host_ip.map(|h| h.parse().unwrap()),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn rule_comments_parse() {
        let json = r#"{"nftables":[{"metainfo":{}},{"chain":{"name":"portmap"}},{"rule":{"family":"inet","table":"nearhost","chain":"portmap","handle":7,"comment":"nh-00ff tcp 8080 ip any","expr":[]}}]}"#;
        assert_eq!(rule_comments(json), vec![(7, "nh-00ff tcp 8080 ip any".to_string())]);
        assert!(rule_comments("{}").is_empty());
    }

    #[test]
    fn skeleton_rules_are_flushed_before_being_added_and_portmap_is_kept() {
        let s = skeleton();
        let flush = s.find("flush chain inet nearhost postrouting").unwrap();
        let add = s.find("add rule inet nearhost postrouting").unwrap();
        assert!(flush < add);
        assert!(!s.contains("flush chain inet nearhost portmap"));
    }

    #[test]
    fn tags_are_stable_and_tell_attachments_apart() {
        assert_eq!(tag("n", "c1", "eth0"), tag("n", "c1", "eth0"));
        assert_eq!(tag("n", "c1", "eth0").len(), 19);
        assert_ne!(tag("n", "c1", "eth0"), tag("n", "c1", "eth1"));
        assert_ne!(tag("n", "c1", "eth0"), tag("m", "c1", "eth0"));
        assert_ne!(tag("a", "bc", "x"), tag("ab", "c", "x"));
    }

    #[test]
    fn mappings_follow_the_host_ip_and_the_container_families() {
        let dual = ips(&["198.19.1.5", "2001:2:1::5"]);
        let rules = plan(&[pm(8080, None)], &dual).unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].add("nh-1").contains(
            "meta nfproto ipv4 tcp dport 8080 dnat ip to 198.19.1.5:80 comment \"nh-1 tcp 8080 ip any\""
        ));
        assert!(rules[1]
            .add("nh-1")
            .contains("meta nfproto ipv6 tcp dport 8080 dnat ip6 to [2001:2:1::5]:80"));
        let one = plan(&[pm(8080, Some("198.18.1.3"))], &dual).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].add("t").contains("meta nfproto ipv4 ip daddr 198.18.1.3 tcp dport 8080"));
        let e = plan(&[pm(8080, Some("2001:2::1"))], &ips(&["198.19.1.5"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtimeConfig.portMappings[0].hostIP: 2001:2::1: the container has no address of its family"
        );
        let e = plan(&[pm(1, None), pm(8080, Some("127.0.0.1"))], &dual).unwrap_err().to_string();
        assert!(
            e.starts_with("runtimeConfig.portMappings[1].hostIP: 127.0.0.1 is not supported"),
            "{e}"
        );
        assert_eq!(plan(&[pm(8080, Some("0.0.0.0"))], &dual).unwrap().len(), 2);
    }

    #[test]
    fn overlapping_mappings_are_found() {
        let r = &plan(&[pm(8080, Some("198.18.1.3"))], &ips(&["198.19.1.5"])).unwrap()[0];
        assert!(r.overlaps("tcp 8080 ip any"));
        assert!(r.overlaps("tcp 8080 ip 198.18.1.3"));
        assert!(!r.overlaps("tcp 8080 ip 198.18.1.4"));
        assert!(!r.overlaps("udp 8080 ip any"));
        assert!(!r.overlaps("tcp 8080 ip6 any"));
        assert!(!r.overlaps("tcp 8081 ip any"));
    }
}
