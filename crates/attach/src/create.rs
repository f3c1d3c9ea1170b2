//! `nearhost net create`: a network definition from flags. The result is an
//! ordinary CNI `.conflist` with one `nearhost` plugin, so runtimes can use the
//! same file; [`crate::netdef::NetDir::create`] validates it with the plugin's
//! own parsers before writing it.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::error::{AttachError, Result};

/// The CNI version `net create` writes.
pub const CNI_VERSION: &str = "1.1.0";

/// What the flags of `net create` say.
#[derive(Debug, Clone, Default)]
pub struct NetSpec {
    pub name: String,
    pub datapath: String,
    pub master: Option<String>,
    pub mode: Option<String>,
    /// One per address family.
    pub subnets: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    /// `(start, end)` of the addresses handed out, per family.
    pub ranges: Vec<(IpAddr, IpAddr)>,
    pub mtu: Option<u32>,
    pub bridge: Option<String>,
    /// Give containers a default route via the gateway.
    pub default_route: bool,
    /// bridge: masquerade traffic leaving the subnet.
    pub ip_masq: bool,
    /// Where the embedded IPAM keeps its state (`ipam.dataDir`).
    pub data_dir: Option<PathBuf>,
    /// macvlan/ipvlan: a second link to the host (`hostReach`), with these
    /// Service CIDRs routed through it.
    pub host_reach: Option<Vec<IpNet>>,
}

impl NetSpec {
    /// The network definition these flags describe.
    pub fn to_config(&self) -> Result<Value> {
        let mut plugin = Map::new();
        plugin.insert("type".into(), json!(crate::netdef::NEARHOST_TYPE));
        plugin.insert("datapath".into(), json!(self.datapath));
        let lower = matches!(self.datapath.as_str(), "macvlan" | "ipvlan");
        if let Some(m) = &self.master {
            if !lower {
                return Err(AttachError::bad_flag(
                    "--master",
                    m,
                    "applies only to --datapath macvlan and ipvlan",
                ));
            }
            plugin.insert("master".into(), json!(m));
        }
        if let Some(m) = &self.mode {
            if !lower {
                return Err(AttachError::bad_flag(
                    "--mode",
                    m,
                    "applies only to --datapath macvlan and ipvlan",
                ));
            }
            plugin.insert("mode".into(), json!(m));
        }
        if let Some(m) = self.mtu {
            plugin.insert("mtu".into(), json!(m));
        }
        if let Some(services) = &self.host_reach {
            if !lower {
                return Err(AttachError::bad_flag(
                    "--host-reach",
                    &self.datapath,
                    "applies only to --datapath macvlan and ipvlan (the others already reach the host)",
                ));
            }
            let cidrs: Vec<String> = services.iter().map(ToString::to_string).collect();
            plugin.insert("hostReach".into(), json!({"serviceCIDRs": cidrs}));
        }
        self.bridge_fields(&mut plugin)?;
        plugin.insert("ipam".into(), self.ipam()?);
        Ok(
            json!({"cniVersion": CNI_VERSION, "name": self.name, "plugins": [Value::Object(plugin)]}),
        )
    }

    fn bridge_fields(&self, plugin: &mut Map<String, Value>) -> Result<()> {
        if self.datapath != "bridge" {
            if let Some(b) = &self.bridge {
                return Err(AttachError::bad_flag(
                    "--bridge",
                    b,
                    "applies only to --datapath bridge",
                ));
            }
            if self.ip_masq {
                return Err(AttachError::bad_flag(
                    "--ip-masq",
                    "true",
                    "applies only to --datapath bridge",
                ));
            }
            return Ok(());
        }
        if let Some(b) = &self.bridge {
            plugin.insert("bridge".into(), json!(b));
        }
        // The bridge holds the gateway address, so the host (and anything it
        // routes for) reaches the containers — what people expect of a bridge.
        plugin.insert("isGateway".into(), json!(true));
        if self.ip_masq {
            plugin.insert("ipMasq".into(), json!(true));
        }
        Ok(())
    }

    fn ipam(&self) -> Result<Value> {
        if self.subnets.is_empty() {
            return Err(AttachError::bad_flag(
                "--subnet",
                "",
                "is required (e.g. --subnet 198.18.0.0/24; repeat it for IPv6)",
            ));
        }
        let mut sets = Vec::new();
        let mut routes = Vec::new();
        for (i, subnet) in self.subnets.iter().enumerate() {
            let v6 = subnet.addr().is_ipv6();
            if self.subnets[..i].iter().any(|s| s.addr().is_ipv6() == v6) {
                return Err(AttachError::bad_flag(
                    "--subnet",
                    subnet.to_string(),
                    format!(
                        "a second IPv{} subnet; give at most one per family",
                        if v6 { 6 } else { 4 }
                    ),
                ));
            }
            let mut range = Map::new();
            range.insert("subnet".into(), json!(subnet.to_string()));
            if let Some(gw) = self.gateways.iter().find(|g| g.is_ipv6() == v6) {
                range.insert("gateway".into(), json!(gw.to_string()));
            }
            if let Some((start, end)) = self.ranges.iter().find(|(s, _)| s.is_ipv6() == v6) {
                range.insert("rangeStart".into(), json!(start.to_string()));
                range.insert("rangeEnd".into(), json!(end.to_string()));
            }
            sets.push(json!([Value::Object(range)]));
            if self.default_route {
                routes.push(json!({"dst": if v6 { "::/0" } else { "0.0.0.0/0" }}));
            }
        }
        self.check_families()?;
        let mut ipam = json!({"type": "nearhost", "ranges": sets});
        if !routes.is_empty() {
            ipam["routes"] = json!(routes);
        }
        if let Some(d) = &self.data_dir {
            ipam["dataDir"] = json!(d);
        }
        Ok(ipam)
    }

    /// Every gateway and range needs a subnet of its family.
    fn check_families(&self) -> Result<()> {
        let has = |v6: bool| self.subnets.iter().any(|s| s.addr().is_ipv6() == v6);
        if let Some(g) = self.gateways.iter().find(|g| !has(g.is_ipv6())) {
            return Err(AttachError::bad_flag(
                "--gateway",
                g.to_string(),
                "has no --subnet of its address family",
            ));
        }
        if let Some((s, e)) = self.ranges.iter().find(|(s, _)| !has(s.is_ipv6())) {
            return Err(AttachError::bad_flag(
                "--range",
                format!("{s}-{e}"),
                "has no --subnet of its address family",
            ));
        }
        Ok(())
    }
}

/// Parses `--range START-END`.
pub fn parse_range(text: &str) -> std::result::Result<(IpAddr, IpAddr), String> {
    let (a, b) =
        text.split_once('-').ok_or("expected START-END, e.g. 198.18.0.100-198.18.0.199")?;
    let start: IpAddr = a.trim().parse().map_err(|_| format!("{a:?} is not an IP address"))?;
    let end: IpAddr = b.trim().parse().map_err(|_| format!("{b:?} is not an IP address"))?;
    if start.is_ipv6() != end.is_ipv6() {
        return Err("START and END must be of the same address family".into());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(datapath: &str) -> NetSpec {
        NetSpec {
            name: "n".into(),
            datapath: datapath.into(),
            subnets: vec!["198.18.0.0/24".parse().unwrap()],
            ..NetSpec::default()
        }
    }

    #[test]
    fn macvlan_dual_stack_with_range_gateway_and_routes() {
        let mut s = spec("macvlan");
        s.master = Some("eth0".into());
        s.subnets.push("2001:2::/64".parse().unwrap());
        s.gateways = vec!["198.18.0.254".parse().unwrap()];
        s.ranges = vec![parse_range("198.18.0.100-198.18.0.150").unwrap()];
        s.default_route = true;
        s.data_dir = Some("/tmp/x".into());
        let c = s.to_config().unwrap();
        let p = &c["plugins"][0];
        assert_eq!((p["type"].as_str(), p["master"].as_str()), (Some("nearhost"), Some("eth0")));
        assert_eq!(p["ipam"]["ranges"][0][0]["gateway"], "198.18.0.254");
        assert_eq!(p["ipam"]["ranges"][0][0]["rangeStart"], "198.18.0.100");
        assert_eq!(p["ipam"]["ranges"][1][0]["subnet"], "2001:2::/64");
        assert_eq!(p["ipam"]["routes"][1]["dst"], "::/0");
        assert_eq!(p["ipam"]["dataDir"], "/tmp/x");
        assert!(p.get("isGateway").is_none());
    }

    #[test]
    fn host_reach_is_for_macvlan_and_ipvlan() {
        let mut s = spec("macvlan");
        s.host_reach = Some(vec!["198.18.250.0/24".parse().unwrap()]);
        let c = s.to_config().unwrap();
        assert_eq!(c["plugins"][0]["hostReach"]["serviceCIDRs"][0], "198.18.250.0/24");
        s.host_reach = Some(Vec::new());
        let c = s.to_config().unwrap();
        assert_eq!(c["plugins"][0]["hostReach"], json!({"serviceCIDRs": []}));
        let mut b = spec("bridge");
        b.host_reach = Some(Vec::new());
        let e = b.to_config().unwrap_err().to_string();
        assert!(e.contains("--host-reach") && e.contains("macvlan and ipvlan"), "{e}");
    }

    #[test]
    fn bridge_is_the_gateway() {
        let c = spec("bridge").to_config().unwrap();
        assert_eq!(c["plugins"][0]["isGateway"], true);
        assert!(c["plugins"][0]["ipam"].get("routes").is_none());
    }

    #[test]
    fn flags_that_do_not_fit_are_named() {
        let mut s = spec("bridge");
        s.master = Some("eth0".into());
        assert!(s
            .to_config()
            .unwrap_err()
            .to_string()
            .starts_with("--master \"eth0\": applies only to"));
        let mut s = spec("macvlan");
        s.gateways = vec!["2001:2::1".parse().unwrap()];
        assert!(s
            .to_config()
            .unwrap_err()
            .to_string()
            .contains("--gateway \"2001:2::1\": has no --subnet"));
        let mut s = spec("macvlan");
        s.subnets.push("198.18.1.0/24".parse().unwrap());
        assert!(s.to_config().unwrap_err().to_string().contains("a second IPv4 subnet"));
        let mut s = spec("macvlan");
        s.subnets.clear();
        assert!(s.to_config().unwrap_err().to_string().starts_with("--subnet"));
        assert!(parse_range("198.18.0.1").is_err());
        assert!(parse_range("198.18.0.1-2001:2::1").is_err());
    }
}
