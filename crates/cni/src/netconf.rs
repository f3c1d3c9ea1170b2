//! The network configuration on stdin: the fields every CNI plugin shares, and
//! the runtime's capability arguments. Datapath options stay in `raw` for the
//! driver to read.

use std::net::IpAddr;

use ipnet::IpNet;
use nearhost_datapath::PortMapping;
use serde_json::Value;

use crate::error::{code, CniError, Result};
use crate::version::SpecVersion;

#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: SpecVersion,
    pub name: String,
    pub raw: Value,
    pub ipam: Option<Value>,
    pub dns: Option<Value>,
    pub runtime: RuntimeConfig,
    pub prev_result: Option<Value>,
}

/// Capability arguments (`runtimeConfig`, and libcni's `args.cni`).
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    pub port_mappings: Vec<PortMapping>,
}

/// Parses stdin as JSON (code 6 when it is not).
pub fn decode(stdin: &[u8]) -> Result<Value> {
    serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("network config on stdin is not valid JSON: {e}"),
        )
    })
}

/// The `cniVersion` of a decoded config (code 1 when unsupported).
pub fn version_of(raw: &Value) -> Result<SpecVersion> {
    let text = match raw.get("cniVersion") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(CniError::config("cniVersion", format!("expected a string, got {v}")))
        }
        None => return Err(CniError::config("cniVersion", "is required")),
    };
    SpecVersion::parse(text).ok_or_else(|| {
        CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion: {text:?} is not supported; nearhost speaks {}",
                SpecVersion::supported_list().join(", ")
            ),
        )
    })
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self> {
        let raw = decode(stdin)?;
        if !raw.is_object() {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "network config on stdin must be a JSON object",
            ));
        }
        let version = version_of(&raw)?;
        let name = match raw.get("name") {
            // The name becomes a directory under every state directory
            // (IPAM, driver claims), whichever IPAM the config uses.
            Some(Value::String(s)) if !s.is_empty() => {
                nearhost_ipam::validate_network_name(s).map_err(|r| CniError::config("name", r))?;
                s.clone()
            }
            Some(v) if !v.is_string() => {
                return Err(CniError::config("name", format!("expected a string, got {v}")))
            }
            _ => return Err(CniError::config("name", "is required (the network's name)")),
        };
        let ipam = raw
            .get("ipam")
            .filter(|v| !v.is_null() && v.as_object().is_some_and(|o| !o.is_empty()))
            .cloned();
        if let Some(i) = &ipam {
            if !i.get("type").is_some_and(Value::is_string) {
                return Err(CniError::config(
                    "ipam.type",
                    "is required (\"nearhost\" or the name of an IPAM plugin)",
                ));
            }
        }
        let runtime = parse_runtime(&raw)?;
        Ok(NetConf {
            version,
            name,
            dns: raw.get("dns").filter(|v| !v.is_null()).cloned(),
            prev_result: raw.get("prevResult").filter(|v| !v.is_null()).cloned(),
            ipam,
            runtime,
            raw,
        })
    }

    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// `cni.dev/valid-attachments` of a GC request: (container ID, ifname).
    pub fn valid_attachments(&self) -> Result<Vec<(String, String)>> {
        let Some(list) = self.raw.get("cni.dev/valid-attachments") else {
            return Err(CniError::config("cni.dev/valid-attachments", "is required for GC"));
        };
        let items = list
            .as_array()
            .ok_or_else(|| CniError::config("cni.dev/valid-attachments", "expected a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let id = a.get("containerID").and_then(Value::as_str);
                let ifname = a.get("ifname").and_then(Value::as_str);
                match (id, ifname) {
                    (Some(id), Some(ifname)) => Ok((id.to_string(), ifname.to_string())),
                    _ => Err(CniError::config(
                        &format!("cni.dev/valid-attachments[{i}]"),
                        "needs \"containerID\" and \"ifname\"",
                    )),
                }
            })
            .collect()
    }
}

fn parse_runtime(raw: &Value) -> Result<RuntimeConfig> {
    let rc = raw.get("runtimeConfig");
    let mut out = RuntimeConfig::default();
    let ip_lists = [
        ("runtimeConfig.ips", rc.and_then(|r| r.get("ips"))),
        ("args.cni.ips", raw.pointer("/args/cni/ips")),
    ];
    for (field, list) in ip_lists {
        let Some(list) = list.filter(|v| !v.is_null()) else { continue };
        let items = list.as_array().ok_or_else(|| {
            CniError::config(field, format!("expected a list of addresses, got {list}"))
        })?;
        for item in items {
            let text = item
                .as_str()
                .ok_or_else(|| CniError::config(field, format!("expected a string, got {item}")))?;
            out.ips.push(parse_ip_maybe_cidr(text).ok_or_else(|| {
                CniError::config(field, format!("{text:?} is not an IP address"))
            })?);
        }
    }
    match rc.and_then(|r| r.get("mac")).or_else(|| raw.pointer("/args/cni/mac")) {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) => out.mac = Some(m.clone()),
        Some(v) => {
            return Err(CniError::config(
                "runtimeConfig.mac",
                format!("expected a string, got {v}"),
            ))
        }
    }
    if let Some(list) = rc.and_then(|r| r.get("portMappings")).filter(|v| !v.is_null()) {
        let items = list
            .as_array()
            .ok_or_else(|| CniError::config("runtimeConfig.portMappings", "expected a list"))?;
        for (i, m) in items.iter().enumerate() {
            out.port_mappings.push(parse_port_mapping(i, m)?);
        }
    }
    Ok(out)
}

/// Accepts `198.18.0.5` and `198.18.0.5/24` (the `ips` capability carries CIDRs).
pub fn parse_ip_maybe_cidr(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// Podman sends `hostPort`, containerd `HostPort`: accept both spellings.
fn parse_port_mapping(i: usize, m: &Value) -> Result<PortMapping> {
    let field = format!("runtimeConfig.portMappings[{i}]");
    let get =
        |lower: &str, upper: &str| m.get(lower).or_else(|| m.get(upper)).filter(|v| !v.is_null());
    let port = |lower: &str, upper: &str| -> Result<u16> {
        let v = get(lower, upper)
            .ok_or_else(|| CniError::config(&format!("{field}.{lower}"), "is required"))?;
        v.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(|| {
            CniError::config(
                &format!("{field}.{lower}"),
                format!("{v} is not a port number (1..65535)"),
            )
        })
    };
    let protocol =
        get("protocol", "Protocol").and_then(Value::as_str).unwrap_or("tcp").to_ascii_lowercase();
    if protocol != "tcp" && protocol != "udp" {
        return Err(CniError::config(
            &format!("{field}.protocol"),
            format!("{protocol:?} is not tcp or udp"),
        ));
    }
    let host_ip = match get("hostIP", "HostIP").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => Some(t.parse().map_err(|_| {
            CniError::config(&format!("{field}.hostIP"), format!("{t:?} is not an IP address"))
        })?),
    };
    Ok(PortMapping {
        host_port: port("hostPort", "HostPort")?,
        container_port: port("containerPort", "ContainerPort")?,
        protocol,
        host_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<NetConf> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn decode_and_version_errors() {
        assert_eq!(NetConf::parse(b"{nope").unwrap_err().code, code::DECODE_FAILURE);
        assert_eq!(
            parse(serde_json::json!({"cniVersion": "0.2.0", "name": "n"})).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        let e = parse(serde_json::json!({"name": "n"})).unwrap_err();
        assert!(e.msg.starts_with("cniVersion"));
        let e = parse(serde_json::json!({"cniVersion": "1.0.0"})).unwrap_err();
        assert!(e.msg.starts_with("name"));
        let e =
            parse(serde_json::json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"ranges": []}}))
                .unwrap_err();
        assert!(e.msg.starts_with("ipam.type"));
    }

    #[test]
    fn both_port_mapping_spellings() {
        let c = parse(serde_json::json!({"cniVersion": "1.0.0", "name": "n", "runtimeConfig": {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                             {"HostPort": 5353, "ContainerPort": 53, "Protocol": "UDP"}],
            "ips": ["198.18.0.7/24"], "mac": "02:00:00:00:00:01"}}))
        .unwrap();
        assert_eq!(c.runtime.port_mappings[0].host_port, 8080);
        assert_eq!(c.runtime.port_mappings[1].container_port, 53);
        assert_eq!(c.runtime.port_mappings[1].protocol, "udp");
        assert_eq!(c.runtime.ips, vec!["198.18.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.runtime.mac.as_deref(), Some("02:00:00:00:00:01"));
        let e = parse(serde_json::json!({"cniVersion": "1.0.0", "name": "n", "runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}})).unwrap_err();
        assert!(e.msg.starts_with("runtimeConfig.portMappings[0].hostPort"), "{}", e.msg);
    }
}
