//! Results: encoded in the format of the config's `cniVersion`, and decoded from
//! any supported version (prevResult, delegated IPAM plugins).

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_datapath::{Iface, IpOut, Outcome, RouteSpec};
use serde_json::{json, Map, Value};

use crate::error::{CniError, Result};
use crate::version::SpecVersion;

/// Encodes an outcome; `sandbox` is the container's netns path.
pub fn encode(
    version: SpecVersion, outcome: &Outcome, sandbox: &str, dns: Option<&Value>,
) -> Value {
    let interfaces: Vec<Value> = outcome
        .interfaces
        .iter()
        .map(|i| {
            let mut o = Map::new();
            o.insert("name".into(), json!(i.name));
            if let Some(mac) = &i.mac {
                o.insert("mac".into(), json!(mac));
            }
            if i.in_sandbox {
                o.insert("sandbox".into(), json!(sandbox));
            }
            if version.is_1_1() {
                if let Some(mtu) = i.mtu {
                    o.insert("mtu".into(), json!(mtu));
                }
                if let Some(pci) = &i.pci_id {
                    o.insert("pciID".into(), json!(pci));
                }
            }
            Value::Object(o)
        })
        .collect();
    let ips: Vec<Value> = outcome
        .ips
        .iter()
        .map(|ip| {
            let mut o = Map::new();
            if version.ips_have_version() {
                o.insert(
                    "version".into(),
                    json!(if ip.address.addr().is_ipv6() { "6" } else { "4" }),
                );
            }
            o.insert("address".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                o.insert("gateway".into(), json!(gw.to_string()));
            }
            if let Some(i) = ip.interface {
                o.insert("interface".into(), json!(i));
            }
            Value::Object(o)
        })
        .collect();
    let routes: Vec<Value> = outcome
        .routes
        .iter()
        .map(|r| match r.gw {
            Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
            None => json!({"dst": r.dst.to_string()}),
        })
        .collect();
    let mut out = json!({"cniVersion": version.as_str(), "interfaces": interfaces, "ips": ips, "routes": routes});
    out["dns"] = dns.cloned().unwrap_or_else(|| json!({}));
    out
}

/// Decodes a result of any supported version. `field` names where it came from
/// (`prevResult`, `ipam result`) for error messages.
pub fn decode(field: &str, v: &Value) -> Result<(Outcome, Option<Value>)> {
    let bad = |what: String| CniError::config(field, what);
    let mut out = Outcome::default();
    for (n, i) in v.get("interfaces").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = i
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("interfaces[{n}].name is missing")))?;
        out.interfaces.push(Iface {
            name: name.to_string(),
            mac: i.get("mac").and_then(Value::as_str).map(str::to_string),
            in_sandbox: i.get("sandbox").and_then(Value::as_str).is_some_and(|s| !s.is_empty()),
            mtu: i.get("mtu").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()),
            pci_id: i.get("pciID").and_then(Value::as_str).map(str::to_string),
        });
    }
    for (n, ip) in v.get("ips").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let text = ip
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("ips[{n}].address is missing")))?;
        let address: IpNet =
            text.parse().map_err(|_| bad(format!("ips[{n}].address {text:?} is not a CIDR")))?;
        let gateway = match ip.get("gateway").and_then(Value::as_str) {
            None => None,
            Some(g) => Some(
                g.parse::<IpAddr>()
                    .map_err(|_| bad(format!("ips[{n}].gateway {g:?} is not an IP")))?,
            ),
        };
        let interface = ip.get("interface").and_then(Value::as_u64).map(|i| i as usize);
        if let Some(i) = interface {
            if i >= out.interfaces.len() {
                return Err(bad(format!(
                    "ips[{n}].interface {i} points past the {} interfaces",
                    out.interfaces.len()
                )));
            }
        }
        out.ips.push(IpOut { address, gateway, interface });
    }
    for (n, r) in v.get("routes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let text = r
            .get("dst")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("routes[{n}].dst is missing")))?;
        let dst: IpNet =
            text.parse().map_err(|_| bad(format!("routes[{n}].dst {text:?} is not a CIDR")))?;
        let gw = match r.get("gw").and_then(Value::as_str) {
            None => None,
            Some(g) => Some(
                g.parse::<IpAddr>()
                    .map_err(|_| bad(format!("routes[{n}].gw {g:?} is not an IP")))?,
            ),
        };
        out.routes.push(RouteSpec { dst, gw });
    }
    Ok((out, v.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned()))
}

/// Appends `ours` to a previous result (chaining): interface indexes in our ips
/// shift by the number of interfaces already there.
pub fn merge(prev: Outcome, ours: Outcome) -> Outcome {
    let shift = prev.interfaces.len();
    let mut out = prev;
    out.interfaces.extend(ours.interfaces);
    out.ips.extend(ours.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + shift);
        ip
    }));
    for r in ours.routes {
        if !out.routes.contains(&r) {
            out.routes.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outcome {
        Outcome {
            interfaces: vec![
                Iface {
                    name: "nh0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    in_sandbox: false,
                    mtu: Some(1500),
                    pci_id: None,
                },
                Iface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    in_sandbox: true,
                    mtu: Some(1500),
                    pci_id: None,
                },
            ],
            ips: vec![
                IpOut {
                    address: "198.18.0.2/24".parse().unwrap(),
                    gateway: Some("198.18.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpOut {
                    address: "2001:2::2/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![RouteSpec {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("198.18.0.1".parse().unwrap()),
            }],
        }
    }

    #[test]
    fn encoding_per_version() {
        let o = sample();
        let v030 = encode(SpecVersion::V0_3_0, &o, "/run/netns/c", None);
        assert_eq!(v030["cniVersion"], "0.3.0");
        assert_eq!(v030["ips"][0]["version"], "4");
        assert_eq!(v030["ips"][1]["version"], "6");
        assert!(v030["interfaces"][0].get("mtu").is_none());
        assert!(v030["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v030["interfaces"][1]["sandbox"], "/run/netns/c");
        let v040 = encode(SpecVersion::V0_4_0, &o, "/run/netns/c", None);
        assert_eq!(v040["ips"][0]["version"], "4");
        let v100 = encode(SpecVersion::V1_0_0, &o, "/run/netns/c", None);
        assert!(v100["ips"][0].get("version").is_none());
        assert!(v100["interfaces"][1].get("mtu").is_none());
        let v110 = encode(
            SpecVersion::V1_1_0,
            &o,
            "/run/netns/c",
            Some(&json!({"nameservers": ["198.18.0.1"]})),
        );
        assert_eq!(v110["interfaces"][1]["mtu"], 1500);
        assert_eq!(v110["ips"][0]["interface"], 1);
        assert_eq!(v110["ips"][0]["gateway"], "198.18.0.1");
        assert_eq!(v110["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v110["dns"]["nameservers"][0], "198.18.0.1");
    }

    #[test]
    fn decode_round_trips_every_version() {
        let o = sample();
        for v in crate::version::SUPPORTED {
            let (back, _) = decode("prevResult", &encode(*v, &o, "/run/netns/c", None)).unwrap();
            let mut want = o.clone();
            if !v.is_1_1() {
                for i in &mut want.interfaces {
                    i.mtu = None;
                }
            }
            assert_eq!(back, want, "version {v}");
        }
    }

    #[test]
    fn decode_rejects_bad_entries_naming_them() {
        let e = decode("prevResult", &json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert!(e.msg.contains("prevResult") && e.msg.contains("ips[0].address"), "{}", e.msg);
        let e = decode(
            "prevResult",
            &json!({"interfaces": [], "ips": [{"address": "198.18.0.2/24", "interface": 3}]}),
        )
        .unwrap_err();
        assert!(e.msg.contains("ips[0].interface"), "{}", e.msg);
    }

    #[test]
    fn merge_shifts_interface_indexes() {
        let prev =
            Outcome { interfaces: vec![sample().interfaces[0].clone()], ..Outcome::default() };
        let merged = merge(prev, sample());
        assert_eq!(merged.interfaces.len(), 3);
        assert_eq!(merged.ips[0].interface, Some(2));
    }
}
