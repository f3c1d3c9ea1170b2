//! Neighbour (ARP/NDP) entries and bridge/VXLAN forwarding-database entries.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::link::{format_mac, Mac};
use crate::netlink::Netlink;

/// A forwarding-database entry of a VXLAN device: frames for `mac` go to the
/// VTEP at `dst`. The all-zero MAC is the flood entry (broadcast, unknown unicast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: Mac,
    pub dst: IpAddr,
}

impl Netlink {
    /// Adds or replaces a permanent neighbour entry `ip → mac` on link `index`.
    pub fn set_permanent_neighbour(&mut self, index: u32, ip: IpAddr, mac: Mac) -> Result<()> {
        let msg = neighbour_message(index, ip, mac);
        self.ack(
            || format!("set neighbour {ip} lladdr {} on link #{index}", format_mac(&mac)),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes a neighbour entry; missing is success.
    pub fn del_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let msg = neighbour_message(index, ip, [0; 6]);
        match self.ack(
            || format!("delete neighbour {ip} on link #{index}"),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Adds an FDB entry on a VXLAN device. Flood entries (zero MAC) are
    /// appended, so one device can flood to many VTEPs (head-end replication).
    pub fn add_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        let msg = fdb_message(entry);
        let flags = if entry.mac == [0; 6] {
            NLM_F_CREATE | NLM_F_APPEND
        } else {
            NLM_F_CREATE | NLM_F_REPLACE
        };
        match self.ack(
            || {
                format!(
                    "add fdb {} dst {} on link #{}",
                    format_mac(&entry.mac),
                    entry.dst,
                    entry.index
                )
            },
            RouteNetlinkMessage::NewNeighbour(msg),
            flags,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Deletes an FDB entry; missing is success.
    pub fn del_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        let msg = fdb_message(entry);
        match self.ack(
            || format!("delete fdb {} dst {}", format_mac(&entry.mac), entry.dst),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// FDB entries with a remote destination on link `index`.
    pub fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let replies = self.dump(|| "dump fdb".into(), RouteNetlinkMessage::GetNeighbour(req))?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
            if n.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut dst = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(l) => {
                        mac = <[u8; 6]>::try_from(l.as_slice()).ok()
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        dst = Some(IpAddr::V4(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        dst = Some(IpAddr::V6(*v6))
                    }
                    _ => {}
                }
            }
            if let (Some(mac), Some(dst)) = (mac, dst) {
                out.push(FdbEntry { index, mac, dst });
            }
        }
        Ok(out)
    }
}

fn neighbour_message(index: u32, ip: IpAddr, mac: Mac) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = if ip.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg
}

fn fdb_message(entry: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = entry.index;
    msg.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry belongs to the VXLAN device itself, not a bridge above it.
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(entry.mac.to_vec()));
    msg.attributes.push(NeighbourAttribute::Destination(match entry.dst {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    msg
}
