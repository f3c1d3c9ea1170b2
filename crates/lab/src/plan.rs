//! The lab's shape and addressing plan, as data: two hosts behind a top-of-rack
//! bridge, and for each datapath the network config every host attaches its
//! container with. Everything lives in namespaces named `nhlab-*`, on
//! 198.18.0.0/15 and 2001:2::/48.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use crate::measure::Service;

/// Every namespace of the lab starts with this.
pub const PREFIX: &str = "nhlab-";
pub const TOR: &str = "nhlab-tor";
/// The ToR bridge holds the LAN's gateway address.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const LAN_PREFIX: u8 = 24;
/// The port every bench server listens on.
pub const SERVER_PORT: u16 = 7000;
/// The host port the bridge datapath maps to its container's server (Docker's
/// default path: client → NAT → host port → DNAT → container).
pub const MAPPED_PORT: u16 = 17000;
/// nginx's port in the server namespaces (`http` workload).
pub const HTTP_PORT: u16 = 8080;
/// The host port the bridge datapath maps to its container's nginx.
pub const MAPPED_HTTP_PORT: u16 = 18080;
pub const VXLAN_VNI: u32 = 42;

/// The datapaths the demo compares, in report order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dp {
    Host,
    Bridge,
    Routed,
    #[serde(rename = "routed-bpf")]
    RoutedBpf,
    Netkit,
    Vxlan,
    Macvlan,
    Ipvlan,
}

pub const ALL: [Dp; 8] = [
    Dp::Host,
    Dp::Bridge,
    Dp::Routed,
    Dp::RoutedBpf,
    Dp::Netkit,
    Dp::Vxlan,
    Dp::Macvlan,
    Dp::Ipvlan,
];

/// The bpffs the lab mounts for `routed-bpf` (its own, unmounted by `down`:
/// the lab leaves no pins behind on the machine).
pub const BPFFS: &str = "/run/nearhost-lab/bpffs";

impl Dp {
    pub fn name(self) -> &'static str {
        match self {
            Dp::Host => "host",
            Dp::Bridge => "bridge",
            Dp::Routed => "routed",
            Dp::RoutedBpf => "routed-bpf",
            Dp::Netkit => "netkit",
            Dp::Vxlan => "vxlan",
            Dp::Macvlan => "macvlan",
            Dp::Ipvlan => "ipvlan",
        }
    }

    /// What the datapath is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Dp::Host => "no container: the host's own stack (--net=host), the baseline",
            Dp::Bridge => {
                "veth + bridge + NAT (masquerade out, DNAT to a host port): Docker's default"
            }
            Dp::Routed => "veth + host routes, host-gw between hosts (Flannel host-gw)",
            Dp::RoutedBpf => {
                "routed + BPF host routing: tcx programs hand pod traffic to the pod's veth peer \
                 and, between hosts, to the FIB's next hop, around the host stack (Cilium's host routing)"
            }
            Dp::Netkit => {
                "netkit pair in L3 mode + host routes, host-gw between hosts (Linux 6.7+; Cilium's \
                 netkit mode without its BPF programs)"
            }
            Dp::Vxlan => "veth + bridge + VXLAN between hosts (Flannel vxlan)",
            Dp::Macvlan => "macvlan (bridge mode) on the host's NIC",
            Dp::Ipvlan => "ipvlan (l2) on the host's NIC",
        }
    }
}

/// One lab host: `h1` or `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostId(pub u8);

impl HostId {
    pub fn ns(self) -> String {
        format!("{PREFIX}h{}", self.0)
    }

    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 10 + self.0)
    }

    pub fn ip6(self) -> String {
        format!("2001:2::{}", 10 + self.0)
    }

    /// The ToR port its NIC is cabled to.
    pub fn tor_port(self) -> String {
        format!("p{}", self.0)
    }

    pub fn container_ns(self, dp: Dp) -> String {
        format!("{PREFIX}h{}-{}", self.0, dp.name())
    }

    pub fn data_dir(self) -> String {
        format!("{}/ipam-h{}", crate::state::LAB_DIR, self.0)
    }
}

pub const HOSTS: [HostId; 2] = [HostId(1), HostId(2)];
/// The client runs on h1, the server on h2.
pub const CLIENT: HostId = HostId(1);
pub const SERVER: HostId = HostId(2);

/// The container subnet of a host for a datapath that has its own subnets.
pub fn container_subnet(dp: Dp, h: HostId) -> Option<String> {
    let base = match dp {
        Dp::Bridge => 0,
        Dp::Routed => 10,
        Dp::Vxlan => 20,
        Dp::RoutedBpf => 40,
        Dp::Netkit => 50,
        _ => return None,
    };
    Some(format!("198.19.{}.0/24", base + h.0))
}

/// The network config host `h` attaches its container of `dp` with.
pub fn netconf(dp: Dp, h: HostId) -> Option<Value> {
    let data = h.data_dir();
    let own_subnet = |subnet: String| json!({"type": "nearhost", "dataDir": data, "ranges": [[{"subnet": subnet}]]});
    // macvlan/ipvlan containers live on the LAN itself: disjoint slices per host.
    let lan_slice = |first: u8| {
        json!({"type": "nearhost", "dataDir": data,
        "ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": format!("198.18.0.{first}"),
                     "rangeEnd": format!("198.18.0.{}", first + 24), "gateway": LAN_GATEWAY.to_string()}]],
        "routes": [{"dst": "0.0.0.0/0"}]})
    };
    let (datapath, ipam, extra) = match dp {
        Dp::Host => return None,
        Dp::Bridge => (
            "bridge",
            own_subnet(container_subnet(dp, h)?),
            json!({"bridge": "nh0", "isDefaultGateway": true, "ipMasq": true}),
        ),
        Dp::Routed => ("routed", own_subnet(container_subnet(dp, h)?), json!({})),
        Dp::RoutedBpf => (
            "routed",
            own_subnet(container_subnet(dp, h)?),
            json!({"bpf": {"uplinks": ["eth0"], "podCIDRs": ["198.19.40.0/22"],
                           "pinPath": format!("{BPFFS}/nearhost")}}),
        ),
        Dp::Netkit => ("netkit", own_subnet(container_subnet(dp, h)?), json!({})),
        Dp::Vxlan => (
            "vxlan",
            own_subnet(container_subnet(dp, h)?),
            json!({"vni": VXLAN_VNI, "underlay": "eth0", "ipMasq": true}),
        ),
        Dp::Macvlan => (
            "macvlan",
            lan_slice(100 + 25 * (h.0 - 1)),
            json!({"master": "eth0", "mode": "bridge"}),
        ),
        Dp::Ipvlan => {
            ("ipvlan", lan_slice(150 + 25 * (h.0 - 1)), json!({"master": "eth0", "mode": "l2"}))
        }
    };
    let mut conf = json!({"cniVersion": "1.1.0", "name": format!("lab-{}", dp.name()), "type": "nearhost",
                          "datapath": datapath, "ipam": ipam});
    for (k, v) in extra.as_object().expect("object") {
        conf[k] = v.clone();
    }
    if dp == Dp::Bridge && h == SERVER {
        conf["runtimeConfig"] = json!({"portMappings": [
            {"hostPort": MAPPED_PORT, "containerPort": SERVER_PORT, "protocol": "tcp"},
            {"hostPort": MAPPED_PORT, "containerPort": SERVER_PORT, "protocol": "udp"},
            {"hostPort": MAPPED_HTTP_PORT, "containerPort": HTTP_PORT, "protocol": "tcp"}]});
    }
    Some(conf)
}

/// Where the client connects for `dp` to `service`, given the server
/// container's address.
pub fn target(dp: Dp, server_container_ip: Option<IpAddr>, service: Service) -> (IpAddr, u16) {
    let (port, mapped) = match service {
        Service::Bench => (SERVER_PORT, MAPPED_PORT),
        Service::Nginx => (HTTP_PORT, MAPPED_HTTP_PORT),
    };
    match (dp, server_container_ip) {
        (Dp::Host, _) | (_, None) => (IpAddr::V4(SERVER.ip()), port),
        // Docker's default: reach the container through a port on its host.
        (Dp::Bridge, _) => (IpAddr::V4(SERVER.ip()), mapped),
        (_, Some(ip)) => (ip, port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_slices_are_disjoint() {
        for h in HOSTS {
            for dp in ALL {
                assert!(h.container_ns(dp).len() < 64);
                if let Some(c) = netconf(dp, h) {
                    assert_eq!(c["cniVersion"], "1.1.0");
                }
            }
        }
        let a = netconf(Dp::Macvlan, HostId(1)).unwrap();
        let b = netconf(Dp::Macvlan, HostId(2)).unwrap();
        assert_ne!(
            a["ipam"]["ranges"][0][0]["rangeStart"],
            b["ipam"]["ranges"][0][0]["rangeStart"]
        );
        let ip: IpAddr = "198.19.2.5".parse().unwrap();
        assert_eq!(target(Dp::Bridge, Some(ip), Service::Bench).1, MAPPED_PORT);
        assert_eq!(target(Dp::Bridge, Some(ip), Service::Nginx).1, MAPPED_HTTP_PORT);
        assert_eq!(target(Dp::Routed, Some(ip), Service::Nginx), (ip, HTTP_PORT));
        assert!(netconf(Dp::Bridge, SERVER).unwrap()["runtimeConfig"]["portMappings"].is_array());
        assert!(netconf(Dp::Bridge, CLIENT).unwrap().get("runtimeConfig").is_none());
    }
}
