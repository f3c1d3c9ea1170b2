//! The per-VF settings of the `sriov` and `sriov-bond` configs (`vlan`,
//! `vlanQoS`, `vlanProto`, `spoofchk`, `trust`, `minTxRate`/`maxTxRate`,
//! `linkState`), validated with errors that name the field and value, and the
//! original values DEL puts back.

use nearhost_kernel::link::Mac;
use nearhost_kernel::sriov::{VfLinkState, VfSetting, VfState, VfVlanTag, VlanProto};

use crate::error::{DatapathError, Result};
use crate::fields::Fields;

const VLAN_PROTOS: &[(&str, VlanProto)] = &[
    ("802.1Q", VlanProto::Dot1Q),
    ("802.1q", VlanProto::Dot1Q),
    ("802.1ad", VlanProto::Dot1Ad),
    ("802.1AD", VlanProto::Dot1Ad),
];

const LINK_STATES: &[(&str, VfLinkState)] = &[
    ("auto", VfLinkState::Auto),
    ("enable", VfLinkState::Enable),
    ("disable", VfLinkState::Disable),
];

/// What the config asks the PF to set on the VF. `None`: leave as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfOptions {
    pub vlan: Option<VfVlanTag>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// (min, max) in Mbit/s, 0 = no limit.
    pub rate: Option<(u32, u32)>,
    pub link_state: Option<VfLinkState>,
}

impl VfOptions {
    pub fn parse(f: &Fields<'_>) -> Result<Self> {
        Ok(VfOptions {
            vlan: parse_vlan(f)?,
            spoofchk: f.bool("spoofchk")?,
            trust: f.bool("trust")?,
            rate: parse_rate(f)?,
            link_state: f.choice("linkState", LINK_STATES)?,
        })
    }

    /// The settings to send to the PF, the MAC first (a VLAN or spoof check
    /// set before it would briefly filter the VF's traffic by its old MAC).
    pub fn settings(&self, mac: Option<Mac>) -> Vec<VfSetting> {
        let mut out = Vec::new();
        out.extend(mac.map(VfSetting::Mac));
        out.extend(self.vlan.map(VfSetting::Vlan));
        out.extend(self.spoofchk.map(VfSetting::SpoofCheck));
        out.extend(self.trust.map(VfSetting::Trust));
        out.extend(self.rate.map(|(min, max)| VfSetting::Rate { min, max }));
        out.extend(self.link_state.map(VfSetting::LinkState));
        out
    }
}

fn parse_vlan(f: &Fields<'_>) -> Result<Option<VfVlanTag>> {
    let id = f.u32("vlan")?;
    let qos = f.u32("vlanQoS")?;
    let proto = f.choice("vlanProto", VLAN_PROTOS)?;
    if let Some(v) = id.filter(|v| *v > 4095) {
        return Err(DatapathError::config("vlan", format!("{v} is out of range (0..4095)")));
    }
    if let Some(q) = qos.filter(|q| *q > 7) {
        return Err(DatapathError::config("vlanQoS", format!("{q} is out of range (0..7)")));
    }
    let vlan = id.unwrap_or(0);
    // The PF tags with priority and protocol only on a real VLAN: the kernel's
    // drivers refuse a QoS or an 802.1ad tag on VLAN 0.
    if vlan == 0 {
        if let Some(q) = qos.filter(|q| *q > 0) {
            return Err(DatapathError::config("vlanQoS", format!("{q} needs a non-zero \"vlan\"")));
        }
        if proto == Some(VlanProto::Dot1Ad) {
            return Err(DatapathError::config("vlanProto", "802.1ad needs a non-zero \"vlan\""));
        }
    }
    if id.is_none() && qos.is_none() && proto.is_none() {
        return Ok(None);
    }
    Ok(Some(VfVlanTag {
        id: vlan as u16,
        qos: qos.unwrap_or(0) as u8,
        proto: proto.unwrap_or_default(),
    }))
}

fn parse_rate(f: &Fields<'_>) -> Result<Option<(u32, u32)>> {
    let (min, max) = (f.u32("minTxRate")?, f.u32("maxTxRate")?);
    if min.is_none() && max.is_none() {
        return Ok(None);
    }
    let (min, max) = (min.unwrap_or(0), max.unwrap_or(0));
    if max != 0 && min > max {
        return Err(DatapathError::config(
            "minTxRate",
            format!("{min} exceeds maxTxRate {max} (Mbit/s; a maxTxRate of 0 means no limit)"),
        ));
    }
    Ok(Some((min, max)))
}

/// The config field a setting comes from, for error messages.
pub fn field_of(s: &VfSetting) -> &'static str {
    match s {
        VfSetting::Mac(_) => "mac",
        VfSetting::Vlan(v) if v.proto == VlanProto::Dot1Ad => "vlanProto",
        VfSetting::Vlan(_) => "vlan",
        VfSetting::Rate { min, .. } if *min > 0 => "minTxRate",
        VfSetting::SpoofCheck(_) => "spoofchk",
        VfSetting::Trust(_) => "trust",
        VfSetting::Rate { .. } => "maxTxRate",
        VfSetting::LinkState(_) => "linkState",
    }
}

/// For each setting ADD will apply, the value it had before, in the reverse
/// order (undo last change first). Where the PF reported nothing, the kernel's
/// defaults for a fresh VF: no admin MAC, VLAN 0, spoof checking on, not
/// trusted, no rate limit, link state auto.
pub fn originals(apply: &[VfSetting], before: Option<&VfState>) -> Vec<VfSetting> {
    let b = before.cloned().unwrap_or_default();
    apply
        .iter()
        .rev()
        .map(|s| match s {
            VfSetting::Mac(_) => VfSetting::Mac(b.mac.unwrap_or([0; 6])),
            VfSetting::Vlan(_) => VfSetting::Vlan(b.vlan.unwrap_or_default()),
            VfSetting::SpoofCheck(_) => VfSetting::SpoofCheck(b.spoofchk.unwrap_or(true)),
            VfSetting::Trust(_) => VfSetting::Trust(b.trust.unwrap_or(false)),
            VfSetting::Rate { .. } => {
                let (min, max) = b.rate.unwrap_or((0, 0));
                VfSetting::Rate { min, max }
            }
            VfSetting::LinkState(_) => VfSetting::LinkState(b.link_state.unwrap_or_default()),
        })
        .collect()
}

/// What differs between the settings ADD applied and the PF's report (CHECK).
/// A field the PF does not report is not a difference.
pub fn differences(applied: &[VfSetting], now: &VfState) -> Vec<String> {
    let vf = now.vf;
    applied
        .iter()
        .filter_map(|want| {
            let have = match want {
                VfSetting::Mac(_) => now.mac.map(VfSetting::Mac),
                VfSetting::Vlan(_) => now.vlan.map(VfSetting::Vlan),
                VfSetting::SpoofCheck(_) => now.spoofchk.map(VfSetting::SpoofCheck),
                VfSetting::Trust(_) => now.trust.map(VfSetting::Trust),
                VfSetting::Rate { .. } => now.rate.map(|(min, max)| VfSetting::Rate { min, max }),
                VfSetting::LinkState(_) => now.link_state.map(VfSetting::LinkState),
            }?;
            (have != *want).then(|| format!("VF {vf} has {have}, config says {want}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> Result<VfOptions> {
        VfOptions::parse(&Fields::new(&v).unwrap())
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn a_full_config_parses() {
        let o = parse(json!({"vlan": 100, "vlanQoS": 5, "vlanProto": "802.1ad", "spoofchk": false, "trust": true,
                             "minTxRate": 10, "maxTxRate": 1000, "linkState": "enable"}))
        .unwrap();
        assert_eq!(o.vlan, Some(VfVlanTag { id: 100, qos: 5, proto: VlanProto::Dot1Ad }));
        assert_eq!(
            (o.spoofchk, o.trust, o.rate, o.link_state),
            (Some(false), Some(true), Some((10, 1000)), Some(VfLinkState::Enable))
        );
        let mac = [2, 0, 0, 0, 0, 1];
        let s = o.settings(Some(mac));
        assert_eq!(s[0], VfSetting::Mac(mac));
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn nothing_set_means_no_settings() {
        let o = parse(json!({})).unwrap();
        assert_eq!(o, VfOptions::default());
        assert!(o.settings(None).is_empty());
    }

    #[test]
    fn errors_name_the_field_and_value() {
        assert_eq!(err(json!({"vlan": 4096})), "vlan: 4096 is out of range (0..4095)");
        assert_eq!(err(json!({"vlan": -1})), "vlan: expected a non-negative integer, got -1");
        assert_eq!(err(json!({"vlan": 10, "vlanQoS": 8})), "vlanQoS: 8 is out of range (0..7)");
        assert_eq!(err(json!({"vlanQoS": 3})), "vlanQoS: 3 needs a non-zero \"vlan\"");
        assert_eq!(
            err(json!({"vlan": 0, "vlanProto": "802.1ad"})),
            "vlanProto: 802.1ad needs a non-zero \"vlan\""
        );
        assert!(err(json!({"vlan": 5, "vlanProto": "qinq"}))
            .starts_with("vlanProto: \"qinq\" is not one of 802.1Q"));
        assert_eq!(
            err(json!({"minTxRate": 500, "maxTxRate": 100})),
            "minTxRate: 500 exceeds maxTxRate 100 (Mbit/s; a maxTxRate of 0 means no limit)"
        );
        assert!(err(json!({"linkState": "up"}))
            .starts_with("linkState: \"up\" is not one of auto, enable, disable"));
        assert!(err(json!({"spoofchk": "yes"})).starts_with("spoofchk: expected true or false"));
        assert!(err(json!({"trust": 1})).starts_with("trust: "));
    }

    #[test]
    fn edges_of_the_ranges_are_accepted() {
        assert_eq!(parse(json!({"vlan": 4095, "vlanQoS": 7})).unwrap().vlan.unwrap().id, 4095);
        assert_eq!(parse(json!({"vlan": 0})).unwrap().vlan, Some(VfVlanTag::default()));
        assert_eq!(parse(json!({"minTxRate": 500, "maxTxRate": 0})).unwrap().rate, Some((500, 0)));
        assert_eq!(parse(json!({"maxTxRate": 100})).unwrap().rate, Some((0, 100)));
    }

    #[test]
    fn originals_come_from_the_pf_report_in_reverse_order() {
        let before = VfState {
            vf: 2,
            mac: Some([2, 0, 0, 0, 0, 9]),
            vlan: Some(VfVlanTag { id: 7, qos: 1, proto: VlanProto::Dot1Q }),
            spoofchk: Some(false),
            trust: Some(true),
            rate: Some((1, 2)),
            link_state: Some(VfLinkState::Disable),
        };
        let apply = VfOptions {
            vlan: Some(VfVlanTag { id: 100, ..Default::default() }),
            spoofchk: Some(true),
            ..Default::default()
        }
        .settings(Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            originals(&apply, Some(&before)),
            vec![
                VfSetting::SpoofCheck(false),
                VfSetting::Vlan(before.vlan.unwrap()),
                VfSetting::Mac([2, 0, 0, 0, 0, 9])
            ]
        );
    }

    #[test]
    fn differences_list_what_changed_and_skip_what_is_not_reported() {
        let applied = vec![
            VfSetting::Trust(true),
            VfSetting::SpoofCheck(false),
            VfSetting::LinkState(VfLinkState::Enable),
        ];
        let now =
            VfState { vf: 4, trust: Some(false), spoofchk: Some(false), ..Default::default() };
        assert_eq!(
            differences(&applied, &now),
            vec!["VF 4 has trust off, config says trust on".to_string()]
        );
    }

    #[test]
    fn originals_without_a_report_are_the_kernel_defaults() {
        let all = VfOptions {
            vlan: Some(VfVlanTag { id: 3, qos: 2, proto: VlanProto::Dot1Ad }),
            spoofchk: Some(false),
            trust: Some(true),
            rate: Some((5, 6)),
            link_state: Some(VfLinkState::Enable),
        }
        .settings(Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            originals(&all, None),
            vec![
                VfSetting::LinkState(VfLinkState::Auto),
                VfSetting::Rate { min: 0, max: 0 },
                VfSetting::Trust(false),
                VfSetting::SpoofCheck(true),
                VfSetting::Vlan(VfVlanTag::default()),
                VfSetting::Mac([0; 6]),
            ]
        );
    }
}
