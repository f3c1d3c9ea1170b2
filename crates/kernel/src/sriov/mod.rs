//! SR-IOV virtual-function settings. They are properties of the PF: an
//! `RTM_SETLINK` on the PF carrying `IFLA_VFINFO_LIST { IFLA_VF_INFO { IFLA_VF_* } }`,
//! and the PF reports them back on an `RTM_GETLINK` that asks for VF info
//! (`IFLA_EXT_MASK` with `RTEXT_FILTER_VF`).

use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfLinkState as NlLinkState, VfVlan, VfVlanInfo,
    VlanProtocol,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::link::{format_mac, Mac};
use crate::netlink::Netlink;

/// The tag protocol of a VF's port VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum VlanProto {
    /// 802.1Q (0x8100): the usual customer VLAN tag.
    #[default]
    Dot1Q,
    /// 802.1ad (0x88a8): a service tag (QinQ outer tag).
    Dot1Ad,
}

/// `IFLA_VF_LINK_STATE`: follow the PF's link, or force it up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum VfLinkState {
    #[default]
    Auto,
    Enable,
    Disable,
}

/// A port VLAN: the PF tags the VF's traffic with `id` (0 = untagged) and
/// priority `qos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct VfVlanTag {
    pub id: u16,
    pub qos: u8,
    pub proto: VlanProto,
}

/// One VF setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VfSetting {
    /// The VF's administrative MAC (the PF enforces it with spoof checking).
    Mac(Mac),
    Vlan(VfVlanTag),
    SpoofCheck(bool),
    Trust(bool),
    /// Transmit rate limits in Mbit/s; 0 means no limit.
    Rate {
        min: u32,
        max: u32,
    },
    LinkState(VfLinkState),
}

/// What the PF reports about one VF. Fields the PF's driver does not report are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VfState {
    pub vf: u32,
    pub mac: Option<Mac>,
    pub vlan: Option<VfVlanTag>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// (min, max) transmit rate in Mbit/s.
    pub rate: Option<(u32, u32)>,
    pub link_state: Option<VfLinkState>,
}

impl std::fmt::Display for VfSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VfSetting::Mac(m) => write!(f, "mac {}", format_mac(m)),
            VfSetting::Vlan(v) => {
                write!(f, "vlan {} qos {} proto {}", v.id, v.qos, proto_name(v.proto))
            }
            VfSetting::SpoofCheck(on) => write!(f, "spoofchk {}", on_off(*on)),
            VfSetting::Trust(on) => write!(f, "trust {}", on_off(*on)),
            VfSetting::Rate { min, max } => write!(f, "min_tx_rate {min} max_tx_rate {max}"),
            VfSetting::LinkState(s) => write!(f, "state {}", link_state_name(*s)),
        }
    }
}

pub fn proto_name(p: VlanProto) -> &'static str {
    match p {
        VlanProto::Dot1Q => "802.1Q",
        VlanProto::Dot1Ad => "802.1ad",
    }
}

pub fn link_state_name(s: VfLinkState) -> &'static str {
    match s {
        VfLinkState::Auto => "auto",
        VfLinkState::Enable => "enable",
        VfLinkState::Disable => "disable",
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

impl Netlink {
    /// Applies one setting to VF `vf` of the PF with index `pf_index`.
    ///
    /// One setting per request: the kernel applies the attributes of a request
    /// in order and stops at the first the driver refuses, so a combined request
    /// could fail half-applied without saying which setting was refused.
    pub fn set_vf(&mut self, pf_index: u32, vf: u32, setting: &VfSetting) -> Result<()> {
        let msg = vf_setting_message(pf_index, vf, setting);
        self.set_link_message(msg, || format!("set VF {vf} {setting} on PF #{pf_index}"))
    }

    /// The PF's report of all its VFs (empty for a device without VFs).
    pub fn vf_states(&mut self, pf_index: u32) -> Result<Vec<VfState>> {
        let replies = self.get(
            || format!("get VF info of PF #{pf_index}"),
            RouteNetlinkMessage::GetLink(vf_query_message(pf_index)),
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_vf_states(l)),
                _ => None,
            })
            .flatten()
            .collect())
    }
}

/// `RTM_SETLINK` on the PF with one VF setting.
pub fn vf_setting_message(pf_index: u32, vf: u32, setting: &VfSetting) -> LinkMessage {
    let info = match *setting {
        VfSetting::Mac(mac) => VfInfo::Mac(VfInfoMac::new(vf, &mac)),
        // IFLA_VF_VLAN_LIST rather than IFLA_VF_VLAN: only the list carries the
        // tag protocol (802.1ad); the kernel takes its single entry.
        VfSetting::Vlan(v) => VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
            vf,
            v.id.into(),
            v.qos.into(),
            proto_to_nl(v.proto),
        ))]),
        VfSetting::SpoofCheck(on) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)),
        VfSetting::Trust(on) => VfInfo::Trust(VfInfoTrust::new(vf, on)),
        VfSetting::Rate { min, max } => VfInfo::Rate(VfInfoRate::new(vf, min, max)),
        VfSetting::LinkState(s) => VfInfo::LinkState(VfInfoLinkState::new(vf, link_state_to_nl(s))),
    };
    let mut msg = LinkMessage::default();
    msg.header.index = pf_index;
    msg.attributes.push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![info])]));
    msg
}

/// `RTM_GETLINK` of the PF asking for VF info but not per-VF statistics (which
/// would make the reply of a PF with many VFs large for nothing).
pub fn vf_query_message(pf_index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = pf_index;
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf, LinkExtentMask::SkipStats]));
    msg
}

/// The VFs described in a link message's `IFLA_VFINFO_LIST`.
pub fn parse_vf_states(msg: &LinkMessage) -> Vec<VfState> {
    msg.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::VfInfoList(list) => Some(list),
            _ => None,
        })
        .flatten()
        .filter_map(|info| parse_vf_info(&info.0))
        .collect()
}

fn parse_vf_info(attrs: &[VfInfo]) -> Option<VfState> {
    let mut s = VfState::default();
    let mut vf = None;
    for a in attrs {
        match a {
            VfInfo::Mac(m) => {
                vf = Some(m.vf_id);
                s.mac = m.mac[..6].try_into().ok();
            }
            // The legacy IFLA_VF_VLAN has no protocol: 802.1Q, unless the list says otherwise.
            VfInfo::Vlan(v) if s.vlan.is_none() => {
                s.vlan = Some(VfVlanTag {
                    id: v.vlan_id as u16,
                    qos: v.qos as u8,
                    proto: VlanProto::Dot1Q,
                })
            }
            VfInfo::VlanList(list) => {
                if let Some(VfVlan::Info(v)) = list.first() {
                    vf = vf.or(Some(v.vf_id));
                    s.vlan = Some(VfVlanTag {
                        id: v.vlan_id as u16,
                        qos: v.qos as u8,
                        proto: proto_from_nl(v.protocol),
                    });
                }
            }
            VfInfo::SpoofCheck(v) => s.spoofchk = Some(v.enabled),
            VfInfo::Trust(v) => s.trust = Some(v.enabled),
            VfInfo::Rate(v) => s.rate = Some((v.min_tx_rate, v.max_tx_rate)),
            VfInfo::LinkState(v) => s.link_state = link_state_from_nl(v.state),
            _ => {}
        }
        vf = vf.or_else(|| vf_id_of(a));
    }
    s.vf = vf?;
    Some(s)
}

fn vf_id_of(a: &VfInfo) -> Option<u32> {
    Some(match a {
        VfInfo::Vlan(v) => v.vf_id,
        VfInfo::SpoofCheck(v) => v.vf_id,
        VfInfo::Trust(v) => v.vf_id,
        VfInfo::Rate(v) => v.vf_id,
        VfInfo::LinkState(v) => v.vf_id,
        _ => return None,
    })
}

fn proto_to_nl(p: VlanProto) -> VlanProtocol {
    match p {
        VlanProto::Dot1Q => VlanProtocol::Ieee8021Q,
        VlanProto::Dot1Ad => VlanProtocol::Ieee8021Ad,
    }
}

fn proto_from_nl(p: VlanProtocol) -> VlanProto {
    match p {
        VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
        _ => VlanProto::Dot1Q,
    }
}

fn link_state_to_nl(s: VfLinkState) -> NlLinkState {
    match s {
        VfLinkState::Auto => NlLinkState::Auto,
        VfLinkState::Enable => NlLinkState::Enable,
        VfLinkState::Disable => NlLinkState::Disable,
    }
}

fn link_state_from_nl(s: NlLinkState) -> Option<VfLinkState> {
    match s {
        NlLinkState::Auto => Some(VfLinkState::Auto),
        NlLinkState::Enable => Some(VfLinkState::Enable),
        NlLinkState::Disable => Some(VfLinkState::Disable),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
