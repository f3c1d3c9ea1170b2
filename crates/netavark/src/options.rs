//! A nearhost network's options as a Podman user types them
//! (`podman network create -d nearhost -o datapath=macvlan -o master=eth0`).
//! The names are the CNI config's field names, so one document describes both;
//! this table gives each its type (Podman's options are all strings) and the
//! datapaths it applies to, so a misspelt or misplaced option is refused at
//! `podman network create`. Values are then checked by the datapath's own
//! config parser, exactly as for a CNI config.

use std::collections::BTreeMap;

use nearhost_cni::CniError;
use serde_json::{json, Map, Value};

/// The datapaths a Podman network can use. Not `vxlan` (its peers come from
/// the node agent, which Podman networks do not join) nor `sriov-bond`.
pub const DATAPATHS: &[&str] = &["macvlan", "ipvlan", "bridge", "routed", "sriov", "hostdev"];

/// The datapath of a network created without `-o datapath`.
pub const DEFAULT_DATAPATH: &str = "macvlan";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Flag,
    Number,
    /// Comma-separated.
    List,
}

struct Opt {
    name: &'static str,
    kind: Kind,
    datapaths: &'static [&'static str],
}

const UPPER: &[&str] = &["macvlan", "ipvlan"];
const DIRECT: &[&str] = &["macvlan", "ipvlan", "sriov", "hostdev"];
const BRIDGE: &[&str] = &["bridge"];
const SRIOV: &[&str] = &["sriov"];
const HOSTDEV: &[&str] = &["hostdev"];
/// Kernel bypass: a VF or NIC handed to vfio-pci.
const USERSPACE: &[&str] = &["sriov", "hostdev"];

const fn opt(name: &'static str, kind: Kind, datapaths: &'static [&'static str]) -> Opt {
    Opt { name, kind, datapaths }
}

const OPTIONS: &[Opt] = &[
    opt("datapath", Kind::Text, DATAPATHS),
    opt("mtu", Kind::Number, DATAPATHS),
    opt("master", Kind::Text, UPPER),
    opt("mode", Kind::Text, UPPER),
    // hostReach: a second link to the host; serviceCIDRs also routes those
    // (Kubernetes Service ranges) through it.
    opt("hostReach", Kind::Flag, DIRECT),
    opt("serviceCIDRs", Kind::List, DIRECT),
    opt("bridge", Kind::Text, BRIDGE),
    opt("ipMasq", Kind::Flag, BRIDGE),
    opt("pf", Kind::Text, SRIOV),
    opt("pfs", Kind::List, SRIOV),
    opt("vf", Kind::Number, SRIOV),
    opt("vlan", Kind::Number, SRIOV),
    opt("vlanQoS", Kind::Number, SRIOV),
    opt("vlanProto", Kind::Text, SRIOV),
    opt("spoofchk", Kind::Flag, SRIOV),
    opt("trust", Kind::Flag, SRIOV),
    opt("linkState", Kind::Text, SRIOV),
    opt("minTxRate", Kind::Number, SRIOV),
    opt("maxTxRate", Kind::Number, SRIOV),
    opt("device", Kind::Text, HOSTDEV),
    opt("pciBusID", Kind::Text, HOSTDEV),
    opt("hwaddr", Kind::Text, HOSTDEV),
    opt("deviceDriver", Kind::Text, USERSPACE),
    opt("requireHugepages", Kind::Flag, USERSPACE),
    opt("allowNoIommu", Kind::Flag, USERSPACE),
];

/// The network's datapath: `-o datapath`, else [`DEFAULT_DATAPATH`].
pub fn datapath(options: &BTreeMap<String, String>) -> Result<&str, CniError> {
    let d = options.get("datapath").map_or(DEFAULT_DATAPATH, String::as_str);
    if DATAPATHS.contains(&d) {
        Ok(d)
    } else {
        Err(CniError::config(
            "datapath",
            format!("{d:?} is not one a Podman network can use ({})", DATAPATHS.join(", ")),
        ))
    }
}

/// Every option is known and applies to the network's datapath.
pub fn check_names(options: &BTreeMap<String, String>) -> Result<(), CniError> {
    let d = datapath(options)?;
    for name in options.keys() {
        let Some(o) = OPTIONS.iter().find(|o| o.name == name) else {
            let known: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
            return Err(CniError::config(
                name,
                format!("is not a nearhost option (known: {})", known.join(", ")),
            ));
        };
        if !o.datapaths.contains(&d) {
            return Err(CniError::config(
                name,
                format!(
                    "applies only to datapath {}; this network's datapath is {d}",
                    o.datapaths.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The defaults a network gets when it is created, written into its options
/// so that `podman network inspect` shows what the network does. (`master`'s
/// default is the host's default-route interface, found by the caller.)
pub fn fill_defaults(options: &mut BTreeMap<String, String>, bridge_name: &str, internal: bool) {
    let d = options.entry("datapath".into()).or_insert_with(|| DEFAULT_DATAPATH.into()).clone();
    match d.as_str() {
        "macvlan" => {
            options.entry("mode".into()).or_insert_with(|| "bridge".into());
        }
        "ipvlan" => {
            options.entry("mode".into()).or_insert_with(|| "l2".into());
        }
        "bridge" => {
            options.entry("bridge".into()).or_insert_with(|| bridge_name.into());
            // Podman's own bridge networks masquerade; an internal one has no
            // way out to masquerade to.
            options.entry("ipMasq".into()).or_insert_with(|| (!internal).to_string());
        }
        _ => {}
    }
}

/// The nearhost plugin's config fields for these options, typed.
pub fn plugin_fields(options: &BTreeMap<String, String>) -> Result<Map<String, Value>, CniError> {
    check_names(options)?;
    let mut out = Map::new();
    let mut host_reach: Option<Map<String, Value>> = None;
    for (name, text) in options {
        let o = OPTIONS.iter().find(|o| o.name == name).expect("checked above");
        let value = typed(o, text)?;
        match o.name {
            "hostReach" => {
                if value == Value::Bool(true) {
                    host_reach.get_or_insert_with(Map::new);
                }
            }
            "serviceCIDRs" => {
                host_reach.get_or_insert_with(Map::new).insert(o.name.into(), value);
            }
            _ => {
                out.insert(o.name.into(), value);
            }
        }
    }
    if options.get("hostReach").map(String::as_str) == Some("false") && host_reach.is_some() {
        return Err(CniError::config("serviceCIDRs", "needs hostReach, which is set to false"));
    }
    if let Some(h) = host_reach {
        out.insert("hostReach".into(), Value::Object(h));
    }
    Ok(out)
}

fn typed(o: &Opt, text: &str) -> Result<Value, CniError> {
    match o.kind {
        Kind::Text => Ok(json!(text)),
        Kind::Flag => match text {
            "true" => Ok(json!(true)),
            "false" => Ok(json!(false)),
            _ => Err(CniError::config(o.name, format!("{text:?} is not true or false"))),
        },
        Kind::Number => text.parse::<u32>().map(|n| json!(n)).map_err(|_| {
            CniError::config(o.name, format!("{text:?} is not a non-negative integer"))
        }),
        Kind::List => {
            let items: Vec<&str> = text.split(',').map(str::trim).collect();
            if items.iter().any(|i| i.is_empty()) {
                return Err(CniError::config(
                    o.name,
                    format!("{text:?} has an empty item (a comma-separated list)"),
                ));
            }
            Ok(json!(items))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_become_typed_config_fields() {
        let o = opts(&[
            ("datapath", "sriov"),
            ("pfs", "enp1s0, enp2s0"),
            ("vlan", "100"),
            ("trust", "true"),
            ("hostReach", "true"),
        ]);
        let f = plugin_fields(&o).unwrap();
        assert_eq!(f["pfs"], json!(["enp1s0", "enp2s0"]));
        assert_eq!(f["vlan"], json!(100));
        assert_eq!(f["trust"], json!(true));
        assert_eq!(f["hostReach"], json!({}));
        let vfio = opts(&[
            ("datapath", "hostdev"),
            ("deviceDriver", "vfio-pci"),
            ("requireHugepages", "false"),
        ]);
        let f = plugin_fields(&vfio).unwrap();
        assert_eq!(
            (&f["deviceDriver"], &f["requireHugepages"]),
            (&json!("vfio-pci"), &json!(false))
        );
        let f = plugin_fields(&opts(&[("serviceCIDRs", "10.96.0.0/12")])).unwrap();
        assert_eq!(f["hostReach"], json!({"serviceCIDRs": ["10.96.0.0/12"]}));
    }

    #[test]
    fn bad_options_are_refused_naming_the_option_and_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("datapth", "macvlan")], "datapth: is not a nearhost option"),
            (&[("datapath", "vxlan")], "datapath: \"vxlan\" is not one a Podman network can use"),
            (
                &[("bridge", "br0")],
                "bridge: applies only to datapath bridge; this network's datapath is macvlan",
            ),
            (&[("datapath", "bridge"), ("ipMasq", "yes")], "ipMasq: \"yes\" is not true or false"),
            (&[("mtu", "-1")], "mtu: \"-1\" is not a non-negative integer"),
            (
                &[("deviceDriver", "vfio-pci")],
                "deviceDriver: applies only to datapath sriov, hostdev; this network's datapath is macvlan",
            ),
            (
                &[("serviceCIDRs", "10.96.0.0/12,")],
                "serviceCIDRs: \"10.96.0.0/12,\" has an empty item",
            ),
            (
                &[("hostReach", "false"), ("serviceCIDRs", "10.96.0.0/12")],
                "serviceCIDRs: needs hostReach",
            ),
        ];
        for (o, want) in cases {
            let e = plugin_fields(&opts(o)).unwrap_err();
            assert!(e.msg.starts_with(want), "{o:?}: {} (wanted {want})", e.msg);
        }
    }

    #[test]
    fn defaults_are_written_into_the_options() {
        let mut o = BTreeMap::new();
        fill_defaults(&mut o, "nhp0", false);
        assert_eq!(o, opts(&[("datapath", "macvlan"), ("mode", "bridge")]));
        let mut o = opts(&[("datapath", "ipvlan"), ("mode", "l3")]);
        fill_defaults(&mut o, "nhp0", false);
        assert_eq!(o["mode"], "l3", "a given value is kept");
        let mut o = opts(&[("datapath", "bridge")]);
        fill_defaults(&mut o, "nhp1234", true);
        assert_eq!(o, opts(&[("datapath", "bridge"), ("bridge", "nhp1234"), ("ipMasq", "false")]));
    }

    #[test]
    fn every_option_names_only_datapaths_podman_networks_use() {
        for o in OPTIONS {
            assert!(o.datapaths.iter().all(|d| DATAPATHS.contains(d)), "{}", o.name);
        }
    }
}
