//! What netavark sends a plugin on `setup` and `teardown`, and the status it
//! reads back. Parsed leniently, as netavark's own types are: a missing field
//! is the same as `null`, unknown fields are ignored (netavark 1.14 writes
//! `null` for every unset option, later versions leave them out).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// stdin of `setup NETNS` and `teardown NETNS`.
#[derive(Debug, Clone, Deserialize)]
pub struct PluginExec {
    pub container_id: String,
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    pub network: Network,
    pub network_options: PerNetworkOptions,
}

/// A network as Podman saved it after our `create` (only the fields a plugin
/// uses; `create` itself works on the whole JSON object so nothing is lost).
#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub subnets: Option<Vec<Subnet>>,
    #[serde(default)]
    pub routes: Option<Vec<Route>>,
    /// `--dns`: given to the containers (no DNS server runs for the network).
    #[serde(default)]
    pub network_dns_servers: Option<Vec<IpAddr>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub destination: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// The container's options on this network.
#[derive(Debug, Clone, Deserialize)]
pub struct PerNetworkOptions {
    pub interface_name: String,
    /// One address per subnet, allocated by Podman (or given with `--ip`).
    #[serde(default)]
    pub static_ips: Option<Vec<IpAddr>>,
    /// `--mac-address`.
    #[serde(default)]
    pub static_mac: Option<String>,
    /// `--network NAME:key=value` options Podman did not consume itself.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// `-p HOST:CONTAINER[/PROTO]`; `range` ports from each start.
#[derive(Debug, Clone, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    #[serde(default)]
    pub host_ip: String,
    pub host_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default = "one")]
    pub range: u16,
}

fn tcp() -> String {
    "tcp".into()
}

fn one() -> u16 {
    1
}

/// stdout of `setup`: what Podman records and shows in `podman inspect`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusBlock {
    pub dns_search_domains: Vec<String>,
    pub dns_server_ips: Vec<IpAddr>,
    pub interfaces: BTreeMap<String, NetInterface>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetInterface {
    pub mac_address: String,
    pub subnets: Vec<NetAddress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetAddress {
    /// The container's address with the subnet's prefix (`198.18.0.2/24`).
    pub ipnet: IpNet,
    pub gateway: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_netavark_1_14_writes_with_nulls_and_what_later_versions_leave_out() {
        let with_nulls = r#"{"container_id":"c1","container_name":"web","port_mappings":null,
            "network":{"dns_enabled":false,"driver":"nearhost","id":"x","internal":false,"ipv6_enabled":false,
              "name":"fast","network_interface":null,"options":{"datapath":"macvlan"},"ipam_options":null,
              "subnets":[{"gateway":"198.18.5.1","lease_range":null,"subnet":"198.18.5.0/24"}],
              "routes":null,"network_dns_servers":null},
            "network_options":{"aliases":null,"interface_name":"eth0","static_ips":["198.18.5.2"],
              "static_mac":null,"options":null}}"#;
        let e: PluginExec = serde_json::from_str(with_nulls).unwrap();
        assert_eq!(e.network.subnets.unwrap()[0].gateway, Some("198.18.5.1".parse().unwrap()));
        assert_eq!(
            e.network_options.static_ips.unwrap(),
            ["198.18.5.2".parse::<IpAddr>().unwrap()]
        );
        let sparse = r#"{"container_id":"c1","network":{"name":"fast"},
            "network_options":{"interface_name":"eth1"}}"#;
        let e: PluginExec = serde_json::from_str(sparse).unwrap();
        assert_eq!(e.network_options.interface_name, "eth1");
        assert!(e.network.options.is_none() && e.port_mappings.is_none());
    }

    #[test]
    fn a_port_mapping_without_protocol_or_range_is_one_tcp_port() {
        let p: PortMapping =
            serde_json::from_str(r#"{"container_port":80,"host_port":8080}"#).unwrap();
        assert_eq!((p.protocol.as_str(), p.range, p.host_ip.as_str()), ("tcp", 1, ""));
    }
}
