//! Typed address requests.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::netlink::Netlink;

/// An address on an interface, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    /// The IPv6 address is still tentative (duplicate address detection running).
    pub tentative: bool,
    pub scope_link: bool,
}

impl Netlink {
    /// Adds an address. `nodad` skips IPv6 duplicate address detection so the
    /// address is usable at once (no ~2 s settle per ADD). Existing is success.
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8, nodad: bool) -> Result<()> {
        let msg = address_message(index, ip, prefix, nodad);
        let r = self.ack(
            || format!("add address {ip}/{prefix} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        match r {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Adds or refreshes an address (used where a stale copy may exist).
    pub fn replace_address(
        &mut self, index: u32, ip: IpAddr, prefix: u8, nodad: bool,
    ) -> Result<()> {
        let msg = address_message(index, ip, prefix, nodad);
        self.ack(
            || format!("replace address {ip}/{prefix} on link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes an address; missing is success.
    pub fn del_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
        let msg = address_message(index, ip, prefix, false);
        match self.ack(
            || format!("delete address {ip}/{prefix} from link #{index}"),
            RouteNetlinkMessage::DelAddress(msg),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// All addresses, or those of one interface.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<IfAddr>> {
        let replies = self.dump(
            || "dump addresses".into(),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(&a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }
}

fn address_message(index: u32, ip: IpAddr, prefix: u8, nodad: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = prefix;
    msg.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    if nodad && ip.is_ipv6() {
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    if let IpAddr::V4(v4) = ip {
        msg.attributes.push(AddressAttribute::Local(ip));
        if prefix < 31 {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let bcast = u32::from(v4) | !mask;
            msg.attributes.push(AddressAttribute::Broadcast(bcast.into()));
        }
    }
    msg
}

fn parse_address(msg: &AddressMessage) -> Option<IfAddr> {
    let mut ip = None;
    let mut tentative = msg.header.flags.contains(AddressHeaderFlags::Tentative);
    for attr in &msg.attributes {
        match attr {
            // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is
            // the peer on point-to-point links); IPv6 sends only IFA_ADDRESS.
            AddressAttribute::Local(a) => ip = Some(*a),
            AddressAttribute::Address(a) if ip.is_none() => ip = Some(*a),
            AddressAttribute::Flags(f) => tentative |= f.contains(AddressFlags::Tentative),
            _ => {}
        }
    }
    Some(IfAddr {
        index: msg.header.index,
        ip: ip?,
        prefix: msg.header.prefix_len,
        tentative,
        scope_link: msg.header.scope == AddressScope::Link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_message_has_local_and_broadcast() {
        let msg = address_message(3, "198.18.0.5".parse().unwrap(), 24, true);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Broadcast("198.18.0.255".parse().unwrap())));
        assert!(msg.attributes.contains(&AddressAttribute::Local("198.18.0.5".parse().unwrap())));
        // nodad is meaningless for IPv4 and must not be sent there
        assert!(!msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Flags(_))));
    }

    #[test]
    fn ipv6_message_is_nodad() {
        let msg = address_message(3, "2001:2::5".parse().unwrap(), 64, true);
        assert!(msg.attributes.contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        assert_eq!(msg.header.family, AddressFamily::Inet6);
    }
}
