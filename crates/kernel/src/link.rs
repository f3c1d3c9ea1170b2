//! Typed link requests: create, look up, change, move and delete interfaces.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_route::link::{
    BondFailOverMac, BondMode as NlBondMode, InfoBond, InfoData, InfoIpVlan, InfoKind, InfoMacVlan,
    InfoNetkit, InfoVeth, InfoVxlan, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode, NetkitMode, Prop, State,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::net::IpAddr;

use crate::error::{KernelError, Result};
use crate::netlink::Netlink;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};

pub type Mac = [u8; 6];

/// What the kernel reports about one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub max_mtu: Option<u32>,
    pub mac: Option<Mac>,
    /// Permanent hardware address (real NICs; absent on virtual links).
    pub perm_mac: Option<Mac>,
    /// `IFLA_PARENT_DEV_NAME`: the bus device behind it (a PCI address for a
    /// NIC or VF; kernels ≥ 5.16, absent on virtual links).
    pub parent_dev: Option<String>,
    /// `veth`, `macvlan`, `bridge`, … (`None` for physical NICs).
    pub kind: Option<String>,
    /// The bridge or bond this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the parent (macvlan, ipvlan, vlan) or the veth peer's index.
    pub parent: Option<u32>,
    /// The peer/parent lives in another namespace (`IFLA_LINK_NETNSID` present).
    pub parent_in_other_netns: bool,
    pub up: bool,
    pub oper_up: bool,
    pub macvlan_mode: Option<MacvlanMode>,
    pub ipvlan_mode: Option<IpvlanMode>,
    pub bond_mode: Option<BondMode>,
    pub num_vf: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    L2,
    L3,
    L3s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    ActiveBackup,
    BalanceXor,
    Lacp,
}

/// The kind-specific part of a new link.
#[derive(Debug, Clone)]
pub enum NewLinkKind<'a> {
    Macvlan {
        parent: u32,
        mode: MacvlanMode,
    },
    Ipvlan {
        parent: u32,
        mode: IpvlanMode,
    },
    /// A veth pair; the peer may be created directly inside another namespace.
    Veth {
        peer_name: String,
        peer_netns: Option<BorrowedFd<'a>>,
        peer_mac: Option<Mac>,
    },
    Bridge,
    Vxlan {
        vni: u32,
        local: Option<IpAddr>,
        port: u16,
        underlay: Option<u32>,
        learning: bool,
    },
    /// A bond; `fail_over_mac_active`: in active-backup, the bond takes the MAC
    /// of whichever member is active instead of giving its MAC to every member.
    Bond {
        mode: BondMode,
        miimon: u32,
        fail_over_mac_active: bool,
    },
    Dummy,
    /// A netkit pair (Linux ≥ 6.7) in L3 mode (no Ethernet header, no
    /// neighbours), forwarding by default; the peer may be created directly
    /// inside another namespace.
    Netkit {
        peer_name: String,
        peer_netns: Option<BorrowedFd<'a>>,
    },
}

/// A link to create. With `netns` set, the link is created directly inside that
/// namespace (no move afterwards: moving takes an RCU barrier under RTNL).
#[derive(Debug, Clone)]
pub struct NewLink<'a> {
    pub name: String,
    pub kind: NewLinkKind<'a>,
    pub netns: Option<BorrowedFd<'a>>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
}

impl Netlink {
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_one_link(msg, || format!("get link {name:?}"))
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_one_link(msg, || format!("get link #{index}"))
    }

    /// Like [`Self::link_by_name`], but a missing link is an error naming it.
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?.ok_or_else(|| KernelError::NoSuchLink(name.to_string()))
    }

    fn get_one_link(
        &mut self, msg: LinkMessage, op: impl FnOnce() -> String,
    ) -> Result<Option<Link>> {
        match self.get(op, RouteNetlinkMessage::GetLink(msg)) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self
            .dump(|| "dump links".into(), RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn create_link(&mut self, spec: &NewLink<'_>) -> Result<()> {
        let msg = new_link_message(spec);
        let name = spec.name.clone();
        self.ack(
            || format!("create link {name:?}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.ack(|| format!("delete link #{index}"), RouteNetlinkMessage::DelLink(msg), 0)
    }

    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        let word = if up { "up" } else { "down" };
        self.ack(|| format!("set link #{index} {word}"), RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Renames a link. When the name is taken by one of the link's own
    /// alternative names — udev gives a NIC that comes back to the initial
    /// namespace its predictable name as one, e.g. a VF whose container died
    /// returns as `eth0` with altname `enp2s0v0` — that altname goes first.
    pub fn rename_link(&mut self, index: u32, name: &str) -> Result<()> {
        let op = || format!("rename link #{index} to {name:?}");
        match self.set_attr(index, LinkAttribute::IfName(name.to_string()), op) {
            Err(e) if e.is_exists() => match self.link_by_name(name)? {
                Some(own) if own.index == index && own.name != name => {
                    self.del_alt_name(index, name)?;
                    self.set_attr(index, LinkAttribute::IfName(name.to_string()), op)
                }
                _ => Err(e),
            },
            other => other,
        }
    }

    /// Removes alternative name `name` of a link (`ip link property del`).
    pub fn del_alt_name(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::PropList(vec![Prop::AltIfName(name.to_string())]));
        self.ack(
            || format!("remove altname {name:?} of link #{index}"),
            RouteNetlinkMessage::DelLinkProp(msg),
            0,
        )
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_attr(index, LinkAttribute::Mtu(mtu), || format!("set mtu {mtu} on link #{index}"))
    }

    pub fn set_mac(&mut self, index: u32, mac: Mac) -> Result<()> {
        self.set_attr(index, LinkAttribute::Address(mac.to_vec()), || {
            format!("set mac {} on link #{index}", format_mac(&mac))
        })
    }

    /// Enslaves to a bridge or bond (`Some`) or releases (`None`).
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        self.set_attr(index, LinkAttribute::Controller(master.unwrap_or(0)), || {
            format!("set master of link #{index} to {master:?}")
        })
    }

    /// Makes `member` the bond's primary: active whenever it has a link.
    pub fn set_bond_primary(&mut self, bond: u32, member: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = bond;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bond),
            LinkInfo::Data(InfoData::Bond(vec![InfoBond::Primary(member)])),
        ]));
        self.ack(
            || format!("make link #{member} the primary of bond #{bond}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Moves a link into another namespace.
    pub fn move_link(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        self.set_attr(index, LinkAttribute::NetNsFd(netns.as_raw_fd()), || {
            format!("move link #{index} to another namespace")
        })
    }

    /// Moves a link into another namespace and renames it there, in one request.
    pub fn move_and_rename_link(
        &mut self, index: u32, netns: BorrowedFd<'_>, name: &str,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.ack(
            || format!("move link #{index} to another namespace as {name:?}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Sends a raw `RTM_SETLINK` built by the caller (e.g. SR-IOV VF settings).
    pub fn set_link_message(
        &mut self, msg: LinkMessage, op: impl FnOnce() -> String,
    ) -> Result<()> {
        self.ack(op, RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn set_attr(
        &mut self, index: u32, attr: LinkAttribute, op: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attr);
        self.ack(op, RouteNetlinkMessage::SetLink(msg), 0)
    }
}

/// The peer half of a pair (veth, netkit): its name, namespace, the pair's
/// MTU and its own MAC.
fn peer_message(
    spec: &NewLink<'_>, name: &str, netns: Option<BorrowedFd<'_>>, mac: Option<Mac>,
) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(name.to_string()));
    if let Some(ns) = netns {
        peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    }
    if let Some(mtu) = spec.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    peer
}

fn new_link_message(spec: &NewLink<'_>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(spec.name.clone()));
    if let Some(ns) = spec.netns {
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    }
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    let (kind, data) = match &spec.kind {
        NewLinkKind::Macvlan { parent, mode } => {
            msg.attributes.push(LinkAttribute::Link(*parent));
            (
                InfoKind::MacVlan,
                Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(macvlan_mode_to_nl(*mode))])),
            )
        }
        NewLinkKind::Ipvlan { parent, mode } => {
            msg.attributes.push(LinkAttribute::Link(*parent));
            (
                InfoKind::IpVlan,
                Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(ipvlan_mode_to_nl(*mode))])),
            )
        }
        NewLinkKind::Veth { peer_name, peer_netns, peer_mac } => {
            let peer = peer_message(spec, peer_name, *peer_netns, *peer_mac);
            (InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(peer))))
        }
        NewLinkKind::Netkit { peer_name, peer_netns } => {
            let peer = peer_message(spec, peer_name, *peer_netns, None);
            (
                InfoKind::Netkit,
                Some(InfoData::Netkit(vec![
                    InfoNetkit::Mode(NetkitMode::L3),
                    InfoNetkit::Peer(peer),
                ])),
            )
        }
        NewLinkKind::Bridge => (InfoKind::Bridge, None),
        NewLinkKind::Dummy => (InfoKind::Dummy, None),
        NewLinkKind::Vxlan { vni, local, port, underlay, learning } => {
            let mut attrs =
                vec![InfoVxlan::Id(*vni), InfoVxlan::Port(*port), InfoVxlan::Learning(*learning)];
            match local {
                Some(IpAddr::V4(a)) => attrs.push(InfoVxlan::Local(*a)),
                Some(IpAddr::V6(a)) => attrs.push(InfoVxlan::Local6(*a)),
                None => {}
            }
            if let Some(dev) = underlay {
                attrs.push(InfoVxlan::Link(*dev));
            }
            (InfoKind::Vxlan, Some(InfoData::Vxlan(attrs)))
        }
        NewLinkKind::Bond { mode, miimon, fail_over_mac_active } => {
            let mut attrs = vec![InfoBond::Mode(bond_mode_to_nl(*mode)), InfoBond::MiiMon(*miimon)];
            if *fail_over_mac_active {
                attrs.push(InfoBond::FailOverMac(BondFailOverMac::Active));
            }
            (InfoKind::Bond, Some(InfoData::Bond(attrs)))
        }
    };
    let mut info = vec![LinkInfo::Kind(kind)];
    if let Some(data) = data {
        info.push(LinkInfo::Data(data));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

fn bond_mode_to_nl(mode: BondMode) -> NlBondMode {
    match mode {
        BondMode::ActiveBackup => NlBondMode::ActiveBackup,
        BondMode::BalanceXor => NlBondMode::BalanceXor,
        BondMode::Lacp => NlBondMode::Ieee8023Ad,
    }
}

fn macvlan_mode_to_nl(mode: MacvlanMode) -> MacVlanMode {
    match mode {
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

fn ipvlan_mode_to_nl(mode: IpvlanMode) -> IpVlanMode {
    match mode {
        IpvlanMode::L2 => IpVlanMode::L2,
        IpvlanMode::L3 => IpVlanMode::L3,
        IpvlanMode::L3s => IpVlanMode::L3S,
    }
}

fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::MaxMtu(m) => link.max_mtu = Some(*m),
            LinkAttribute::Address(a) => link.mac = to_mac(a),
            LinkAttribute::PermAddress(a) => link.perm_mac = to_mac(a),
            LinkAttribute::ParentDevName(d) => link.parent_dev = Some(d.clone()),
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::Link(p) => link.parent = Some(*p),
            LinkAttribute::LinkNetNsId(_) => link.parent_in_other_netns = true,
            LinkAttribute::OperState(s) => link.oper_up = matches!(s, State::Up | State::Unknown),
            LinkAttribute::NumVf(n) => link.num_vf = Some(*n),
            LinkAttribute::LinkInfo(infos) => parse_link_info(infos, &mut link),
            _ => {}
        }
    }
    link
}

fn parse_link_info(infos: &[LinkInfo], link: &mut Link) {
    for info in infos {
        match info {
            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
            LinkInfo::Data(InfoData::MacVlan(attrs)) => {
                for a in attrs {
                    if let InfoMacVlan::Mode(m) = a {
                        link.macvlan_mode = match m {
                            MacVlanMode::Private => Some(MacvlanMode::Private),
                            MacVlanMode::Vepa => Some(MacvlanMode::Vepa),
                            MacVlanMode::Bridge => Some(MacvlanMode::Bridge),
                            MacVlanMode::Passthrough => Some(MacvlanMode::Passthru),
                            _ => None,
                        }
                    }
                }
            }
            LinkInfo::Data(InfoData::Bond(attrs)) => {
                let mode =
                    attrs
                        .iter()
                        .find_map(|a| if let InfoBond::Mode(m) = a { Some(*m) } else { None });
                link.bond_mode = [BondMode::ActiveBackup, BondMode::BalanceXor, BondMode::Lacp]
                    .into_iter()
                    .find(|b| Some(bond_mode_to_nl(*b)) == mode);
            }
            LinkInfo::Data(InfoData::IpVlan(attrs)) => {
                for a in attrs {
                    if let InfoIpVlan::Mode(m) = a {
                        link.ipvlan_mode = match m {
                            IpVlanMode::L2 => Some(IpvlanMode::L2),
                            IpVlanMode::L3 => Some(IpvlanMode::L3),
                            IpVlanMode::L3S => Some(IpvlanMode::L3s),
                            _ => None,
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn to_mac(bytes: &[u8]) -> Option<Mac> {
    bytes.try_into().ok()
}

pub fn format_mac(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (also with `-` separators).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// A random, locally administered unicast MAC address.
pub fn random_mac() -> Mac {
    let mut mac = [0u8; 6];
    for b in &mut mac {
        *b = fastrand::u8(..);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// A host-side name: `prefix` (at most 7 bytes) + 8 random hex digits.
pub fn random_link_name(prefix: &str) -> String {
    debug_assert!(prefix.len() <= 7);
    format!("{prefix}{:08x}", fastrand::u32(..))
}

/// A temporary interface name that cannot collide with a user's: `nhtmp` + 10 hex.
pub fn temp_link_name() -> String {
    format!("nhtmp{:010x}", fastrand::u64(..) & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_rejects() {
        let mac = parse_mac("02:AB:cd:00:11:ff").unwrap();
        assert_eq!(format_mac(&mac), "02:ab:cd:00:11:ff");
        assert_eq!(parse_mac("02-ab-cd-00-11-ff"), Some(mac));
        for bad in
            ["", "02:ab:cd:00:11", "02:ab:cd:00:11:ff:00", "0g:ab:cd:00:11:ff", "2:ab:cd:00:11:ff0"]
        {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_mac_is_local_unicast() {
        for _ in 0..100 {
            let m = random_mac();
            assert_eq!(m[0] & 1, 0);
            assert_eq!(m[0] & 2, 2);
        }
    }

    #[test]
    fn temp_names_fit_ifnamsiz() {
        let n = temp_link_name();
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("nhtmp"));
    }

    #[test]
    fn macvlan_request_carries_parent_mode_and_target_namespace() {
        let spec = NewLink {
            name: "nhtmp0".into(),
            kind: NewLinkKind::Macvlan { parent: 7, mode: MacvlanMode::Bridge },
            netns: None,
            mtu: Some(1400),
            mac: None,
        };
        let msg = new_link_message(&spec);
        assert!(msg.attributes.contains(&LinkAttribute::Link(7)));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1400)));
        let info = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(i) => Some(i.clone()),
            _ => None,
        });
        assert_eq!(
            info.unwrap(),
            vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Bridge)]))
            ]
        );
    }

    #[test]
    fn bond_request_carries_mode_miimon_and_fail_over_mac() {
        let spec = |fail_over_mac_active| NewLink {
            name: "nhtmp0".into(),
            kind: NewLinkKind::Bond {
                mode: BondMode::ActiveBackup,
                miimon: 100,
                fail_over_mac_active,
            },
            netns: None,
            mtu: None,
            mac: None,
        };
        let data = |msg: LinkMessage| {
            msg.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => i.into_iter().find_map(|x| match x {
                    LinkInfo::Data(InfoData::Bond(b)) => Some(b),
                    _ => None,
                }),
                _ => None,
            })
        };
        let plain = vec![InfoBond::Mode(NlBondMode::ActiveBackup), InfoBond::MiiMon(100)];
        assert_eq!(data(new_link_message(&spec(false))).unwrap(), plain);
        let mut active = plain.clone();
        active.push(InfoBond::FailOverMac(BondFailOverMac::Active));
        assert_eq!(data(new_link_message(&spec(true))).unwrap(), active);
        let parsed = parse_link(&new_link_message(&spec(true)));
        assert_eq!(
            (parsed.kind.as_deref(), parsed.bond_mode),
            (Some("bond"), Some(BondMode::ActiveBackup))
        );
    }
}
