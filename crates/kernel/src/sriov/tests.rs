//! Byte-level tests of the VF messages: this machine has no SR-IOV hardware, so
//! the bytes are checked against the kernel's layouts (include/uapi/linux/if_link.h)
//! written out by hand. Netlink is host-endian; the layouts below are little-endian.
#![cfg(target_endian = "little")]

use netlink_packet_core::{Emitable, Parseable};

use super::*;

const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_NUM_VF: u16 = 30;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_VF_INFO: u16 = 1;
const IFLA_VF_MAC: u16 = 1;
const IFLA_VF_VLAN: u16 = 2;
const IFLA_VF_TX_RATE: u16 = 3;
const IFLA_VF_SPOOFCHK: u16 = 4;
const IFLA_VF_LINK_STATE: u16 = 5;
const IFLA_VF_RATE: u16 = 6;
const IFLA_VF_TRUST: u16 = 9;
const IFLA_VF_VLAN_LIST: u16 = 12;
const IFLA_VF_VLAN_INFO: u16 = 1;

/// An attribute: u16 length (header included), u16 type, body, padding to 4.
fn nla(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + body.len()) as u16).to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(body);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
fn ifinfomsg(index: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0];
    v.extend_from_slice(&words(&[index, 0, 0]));
    v
}

/// What `set VF vf` on PF #7 must look like around one IFLA_VF_* attribute.
fn setlink_bytes(vf_attr: Vec<u8>) -> Vec<u8> {
    let mut v = ifinfomsg(7);
    v.extend(nla(IFLA_VFINFO_LIST, &nla(IFLA_VF_INFO, &vf_attr)));
    v
}

fn emit(msg: &LinkMessage) -> Vec<u8> {
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    buf
}

/// Encodes `setting`, compares with `want`, then decodes the bytes back.
fn check_setting(setting: VfSetting, want: Vec<u8>) -> VfState {
    let bytes = emit(&vf_setting_message(7, 3, &setting));
    assert_eq!(bytes, want, "{setting}");
    let back = LinkMessage::parse(&bytes[..]).expect("parses");
    assert_eq!(back.header.index, 7);
    let states = parse_vf_states(&back);
    assert_eq!(states.len(), 1, "{setting}: {states:?}");
    assert_eq!(states[0].vf, 3);
    states[0].clone()
}

#[test]
fn mac_message_fully_spelled_out() {
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    #[rustfmt::skip]
    let mut want = vec![
        0, 0, 0, 0,  7, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0, // ifinfomsg, index 7
        48, 0, 22, 0,                                       // IFLA_VFINFO_LIST, not NLA_F_NESTED (as the kernel emits it)
        44, 0, 1, 0,                                        //   IFLA_VF_INFO
        40, 0, 1, 0,                                        //     IFLA_VF_MAC: struct ifla_vf_mac
        3, 0, 0, 0,                                         //       vf
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55,                 //       mac[32]
    ];
    want.extend([0u8; 26]);
    let state = check_setting(VfSetting::Mac(mac), want);
    assert_eq!(state.mac, Some(mac));
    assert_eq!(VfSetting::Mac(mac).to_string(), "mac 02:11:22:33:44:55");
}

#[test]
fn vlan_goes_in_a_vlan_list_with_its_protocol_big_endian() {
    for (proto, wire) in [(VlanProto::Dot1Q, [0x81, 0x00]), (VlanProto::Dot1Ad, [0x88, 0xa8])] {
        let tag = VfVlanTag { id: 4094, qos: 7, proto };
        // struct ifla_vf_vlan_info: vf, vlan, qos (u32 each), vlan_proto (__be16), 2 bytes padding
        let mut info = words(&[3, 4094, 7]);
        info.extend_from_slice(&wire);
        info.extend_from_slice(&[0, 0]);
        let state = check_setting(
            VfSetting::Vlan(tag),
            setlink_bytes(nla(IFLA_VF_VLAN_LIST, &nla(IFLA_VF_VLAN_INFO, &info))),
        );
        assert_eq!(state.vlan, Some(tag));
    }
}

#[test]
fn vlan_zero_clears_the_port_vlan() {
    let tag = VfVlanTag { id: 0, qos: 0, proto: VlanProto::Dot1Q };
    let mut info = words(&[3, 0, 0]);
    info.extend_from_slice(&[0x81, 0x00, 0, 0]);
    check_setting(
        VfSetting::Vlan(tag),
        setlink_bytes(nla(IFLA_VF_VLAN_LIST, &nla(IFLA_VF_VLAN_INFO, &info))),
    );
}

#[test]
fn spoofchk_and_trust_are_vf_and_a_u32_flag() {
    for on in [true, false] {
        let s = check_setting(
            VfSetting::SpoofCheck(on),
            setlink_bytes(nla(IFLA_VF_SPOOFCHK, &words(&[3, on as u32]))),
        );
        assert_eq!(s.spoofchk, Some(on));
        let s = check_setting(
            VfSetting::Trust(on),
            setlink_bytes(nla(IFLA_VF_TRUST, &words(&[3, on as u32]))),
        );
        assert_eq!(s.trust, Some(on));
    }
}

#[test]
fn rate_carries_min_then_max() {
    let s = check_setting(
        VfSetting::Rate { min: 100, max: 2500 },
        setlink_bytes(nla(IFLA_VF_RATE, &words(&[3, 100, 2500]))),
    );
    assert_eq!(s.rate, Some((100, 2500)));
}

#[test]
fn link_state_values_are_auto_enable_disable() {
    for (state, wire) in
        [(VfLinkState::Auto, 0), (VfLinkState::Enable, 1), (VfLinkState::Disable, 2)]
    {
        let s = check_setting(
            VfSetting::LinkState(state),
            setlink_bytes(nla(IFLA_VF_LINK_STATE, &words(&[3, wire]))),
        );
        assert_eq!(s.link_state, Some(state));
    }
}

#[test]
fn vf_query_asks_for_vf_info_without_stats() {
    let mut want = ifinfomsg(9);
    // RTEXT_FILTER_VF (1) | RTEXT_FILTER_SKIP_STATS (8)
    want.extend(nla(IFLA_EXT_MASK, &words(&[1 | 8])));
    assert_eq!(emit(&vf_query_message(9)), want);
}

/// One VF as the kernel's rtnl_fill_vfinfo writes it (stats skipped).
fn kernel_vf_info(
    vf: u32, mac: [u8; 6], vlan: u32, qos: u32, proto: [u8; 2], spoof: u32, trust: u32,
) -> Vec<u8> {
    let mut mac_body = words(&[vf]);
    mac_body.extend_from_slice(&mac);
    mac_body.extend([0u8; 26]);
    let mut vlan_info = words(&[vf, vlan, qos]);
    vlan_info.extend_from_slice(&proto);
    vlan_info.extend_from_slice(&[0, 0]);
    let mut v = nla(IFLA_VF_MAC, &mac_body);
    v.extend(nla(IFLA_VF_VLAN, &words(&[vf, vlan, qos])));
    v.extend(nla(IFLA_VF_VLAN_LIST, &nla(IFLA_VF_VLAN_INFO, &vlan_info)));
    v.extend(nla(IFLA_VF_TX_RATE, &words(&[vf, 1000])));
    v.extend(nla(IFLA_VF_SPOOFCHK, &words(&[vf, spoof])));
    v.extend(nla(IFLA_VF_LINK_STATE, &words(&[vf, 2])));
    v.extend(nla(IFLA_VF_RATE, &words(&[vf, 10, 1000])));
    v.extend(nla(IFLA_VF_TRUST, &words(&[vf, trust])));
    nla(IFLA_VF_INFO, &v)
}

#[test]
fn decodes_a_kernel_report_of_two_vfs() {
    let mut bytes = ifinfomsg(7);
    bytes.extend(nla(IFLA_NUM_VF, &words(&[2])));
    let mut list = kernel_vf_info(0, [2, 0, 0, 0, 0, 0xa0], 100, 3, [0x88, 0xa8], 1, 0);
    list.extend(kernel_vf_info(1, [0; 6], 0, 0, [0x81, 0x00], 0, 1));
    bytes.extend(nla(IFLA_VFINFO_LIST, &list));
    let msg = LinkMessage::parse(&bytes[..]).expect("parses");
    let states = parse_vf_states(&msg);
    let first = VfState {
        vf: 0,
        mac: Some([2, 0, 0, 0, 0, 0xa0]),
        vlan: Some(VfVlanTag { id: 100, qos: 3, proto: VlanProto::Dot1Ad }),
        spoofchk: Some(true),
        trust: Some(false),
        rate: Some((10, 1000)),
        link_state: Some(VfLinkState::Disable),
    };
    assert_eq!(states[0], first);
    assert_eq!(states[1].vf, 1);
    assert_eq!(states[1].mac, Some([0; 6]));
    assert_eq!(states[1].vlan, Some(VfVlanTag::default()));
    assert_eq!((states[1].spoofchk, states[1].trust), (Some(false), Some(true)));
    assert_eq!(states.len(), 2);
}

#[test]
fn a_link_without_vfs_reports_none() {
    let msg = LinkMessage::parse(&ifinfomsg(4)[..]).unwrap();
    assert!(parse_vf_states(&msg).is_empty());
}
