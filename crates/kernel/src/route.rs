//! Typed route requests.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::netlink::Netlink;

/// A route in the main table (or `table`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// Destination prefix (host bits zero); `0.0.0.0/0` or `::/0` is the
    /// default route. Its family is the route's family.
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// The gateway is on-link even though no address covers it (link-local next hops).
    pub onlink: bool,
    /// Scope link (directly connected, no gateway).
    pub scope_link: bool,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    /// Set by the kernel when it made the route (prefix routes for addresses).
    pub proto_kernel: bool,
}

impl Route {
    /// A route to `dst` (host bits are cleared).
    pub fn to(dst: IpNet) -> Self {
        Route {
            dst: dst.trunc(),
            gateway: None,
            oif: None,
            onlink: false,
            scope_link: false,
            src: None,
            metric: None,
            table: None,
            proto_kernel: false,
        }
    }

    /// The default route of the IPv6 (`v6`) or IPv4 family.
    pub fn default_of(v6: bool) -> Self {
        Route::to(if v6 { IpNet::V6(Default::default()) } else { IpNet::V4(Default::default()) })
    }

    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }

    pub fn is_v6(&self) -> bool {
        self.dst.addr().is_ipv6()
    }
}

impl Netlink {
    /// Adds a route; an identical existing route is success.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let msg = route_message(route);
        match self.ack(
            || format!("add route {}", describe(route)),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Adds or replaces the route to the same destination.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        let msg = route_message(route);
        self.ack(
            || format!("replace route {}", describe(route)),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes a route; missing is success.
    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        let mut msg = route_message(route);
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        match self.ack(
            || format!("delete route {}", describe(route)),
            RouteNetlinkMessage::DelRoute(msg),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Routes of one family in the main table.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let replies = self.dump(|| "dump routes".into(), RouteNetlinkMessage::GetRoute(req))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(&r),
                _ => None,
            })
            .filter(|r| r.table.is_none_or(|t| t == u32::from(RouteHeader::RT_TABLE_MAIN)))
            .collect())
    }

    /// The interfaces that carry a default route (IPv4 and IPv6).
    pub fn default_route_links(&mut self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for r in self.routes(v6)? {
                if r.is_default() {
                    if let Some(oif) = r.oif {
                        if !out.contains(&oif) {
                            out.push(oif);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn describe(r: &Route) -> String {
    let dst = if r.is_default() { "default".to_string() } else { r.dst.to_string() };
    let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    let dev = r.oif.map(|o| format!(" dev #{o}")).unwrap_or_default();
    format!("{dst}{via}{dev}")
}

fn route_message(r: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = if r.is_v6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::Boot;
    h.kind = RouteType::Unicast;
    h.scope = if r.scope_link || (r.gateway.is_none() && r.oif.is_some()) {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if r.onlink {
        h.flags = RouteFlags::Onlink;
    }
    if !r.is_default() {
        h.destination_prefix_length = r.dst.prefix_len();
        msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(r.dst.addr())));
    }
    if let Some(gw) = r.gateway {
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = r.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(src) = r.src {
        msg.attributes.push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(m) = r.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    if let Some(t) = r.table {
        if t > 255 {
            msg.attributes.push(RouteAttribute::Table(t));
        } else {
            msg.header.table = t as u8;
        }
    }
    msg
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let h = &msg.header;
    if h.kind != RouteType::Unicast {
        return None; // local, broadcast, multicast: not ours to manage
    }
    let v6 = h.address_family == AddressFamily::Inet6;
    let mut r = Route::default_of(v6);
    r.table = Some(u32::from(h.table));
    r.onlink = h.flags.contains(RouteFlags::Onlink);
    r.scope_link = h.scope == RouteScope::Link;
    r.proto_kernel = h.protocol == RouteProtocol::Kernel;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => {
                // An address of the other family or a bad prefix is not a route we can name.
                let ip = route_addr(a).filter(|ip| ip.is_ipv6() == v6)?;
                r.dst = IpNet::new(ip, h.destination_prefix_length).ok()?.trunc();
            }
            RouteAttribute::Gateway(a) => r.gateway = route_addr(a),
            RouteAttribute::Oif(o) => r.oif = Some(*o),
            RouteAttribute::PrefSource(a) => r.src = route_addr(a),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Table(t) => r.table = Some(*t),
            _ => {}
        }
    }
    if r.is_default() && h.destination_prefix_length != 0 {
        return None;
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onlink_default_route_message() {
        let mut r = Route::default_of(false);
        r.gateway = Some("169.254.1.1".parse().unwrap());
        r.oif = Some(2);
        r.onlink = true;
        let msg = route_message(&r);
        assert!(msg.header.flags.contains(RouteFlags::Onlink));
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert!(msg.attributes.contains(&RouteAttribute::Oif(2)));
    }

    #[test]
    fn device_route_has_link_scope_and_parses_back() {
        let mut r = Route::to("198.18.0.7/32".parse().unwrap());
        r.oif = Some(9);
        let msg = route_message(&r);
        assert_eq!(msg.header.scope, RouteScope::Link);
        let back = parse_route(&msg).unwrap();
        assert_eq!(back.dst, r.dst);
        assert_eq!(back.oif, Some(9));
        assert!(back.scope_link);
    }

    #[test]
    fn the_family_follows_the_destination() {
        let r = Route::to("2001:2::5/64".parse().unwrap());
        assert!(r.is_v6() && !r.is_default());
        assert_eq!(r.dst.to_string(), "2001:2::/64", "host bits are cleared");
        let msg = route_message(&Route::default_of(true));
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert!(parse_route(&msg).unwrap().is_default());
    }
}
