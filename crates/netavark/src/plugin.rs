//! netavark's four calls. `create` checks a network as ADD would and fills in
//! its defaults; `setup` and `teardown` are the CNI plugin's ADD and DEL, run
//! in this process through [`nearhost_cni::handle`] with a config built from
//! the network's options — the same datapath code the CNI plugin and
//! `nearhost attach` run.
//!
//! Addresses are Podman's: a nearhost network is created with Podman's
//! `host-local` IPAM, so Podman allocates one address per subnet (or takes
//! `--ip`), keeps it in its own database, and hands it to `setup` in
//! `static_ips`. The plugin passes those to the datapath as a chained CNI
//! plugin gets an IPAM plugin's result (`prevResult`), so nearhost records no
//! address of its own: nothing to leak when netavark skips a teardown (it
//! does when the container's namespace is already gone), and no second
//! allocator to disagree with what `podman inspect` shows.

use std::collections::BTreeMap;
use std::net::IpAddr;

use nearhost_cni::error::code;
use nearhost_cni::{result, CniError, Command, Invocation};
use nearhost_datapath::{Namespace, Outcome};
use serde_json::{json, Map, Value};

use crate::options;
use crate::types::{NetAddress, NetInterface, PluginExec, StatusBlock};

/// The CNI version of the configs built for the plugin.
const CNI_VERSION: &str = "1.1.0";

/// The plugin API version netavark 1.x defines.
pub const API_VERSION: &str = "1.0.0";

type Result<T> = std::result::Result<T, CniError>;

/// `info`.
pub fn info() -> Value {
    json!({"version": env!("CARGO_PKG_VERSION"), "api_version": API_VERSION,
           "datapaths": options::DATAPATHS.join(",")})
}

/// `create`: the network Podman is about to save, checked and completed.
/// Every field Podman sent is given back (Podman replaces its copy with ours).
pub fn create(stdin: &[u8]) -> Result<Value> {
    let mut net: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(code::DECODE_FAILURE, format!("reading the network from Podman: {e}"))
    })?;
    let obj = net
        .as_object_mut()
        .ok_or_else(|| CniError::new(code::DECODE_FAILURE, "the network is not a JSON object"))?;
    let name = text(obj, "name")?.to_string();
    let id = text(obj, "id").unwrap_or_default().to_string();
    let mut opts = string_map(obj.get("options"), "options")?;
    options::check_names(&opts)?;
    let datapath = options::datapath(&opts)?.to_string();
    let parent = obj.get("network_interface").and_then(Value::as_str).filter(|s| !s.is_empty());
    if matches!(datapath.as_str(), "macvlan" | "ipvlan") {
        // `--interface-name` is how Podman's own macvlan names the parent.
        let configured = opts.get("master").map(String::as_str).or(parent);
        let mut host = Namespace::current()?;
        let master = nearhost_datapath::resolve_master(&mut host, configured)?;
        opts.insert("master".into(), master);
    } else if let Some(p) = parent {
        return Err(CniError::config(
            "network_interface",
            format!("{p:?} (--interface-name) names the parent of a macvlan or ipvlan network; this network's datapath is {datapath}"),
        ));
    }
    let internal = obj.get("internal").and_then(Value::as_bool).unwrap_or(false);
    options::fill_defaults(&mut opts, &bridge_name(&id), internal);

    let ipam = string_map(obj.get("ipam_options"), "ipam_options")?;
    match ipam.get("driver").map(String::as_str) {
        None | Some("host-local") => {}
        Some(other) => {
            return Err(CniError::config(
                "ipam_options.driver",
                format!("{other:?}: a nearhost network takes its addresses from Podman's own IPAM (host-local); leave --ipam-driver out"),
            ))
        }
    }
    let subnets = obj.get("subnets").and_then(Value::as_array).map_or(0, Vec::len);
    if subnets == 0 {
        return Err(CniError::config(
            "subnets",
            "none given: create the network with --subnet (and --gateway where the gateway is not the subnet's first address); Podman allocates the containers' addresses from it",
        ));
    }
    // Everything the CNI plugin's ADD checks before it touches anything.
    let conf = plugin_config(&name, &opts)?;
    nearhost_cni::plugin::validate(&serde_json::to_vec(&conf).expect("JSON values serialize"))?;

    obj.insert("options".into(), json!(opts));
    obj.insert("ipam_options".into(), json!({"driver": "host-local"}));
    // No DNS server answers on a plugin network (netavark runs aardvark-dns
    // for its bridge only); DNS servers the user gave go to the containers.
    let servers = obj.get("network_dns_servers").and_then(Value::as_array).map_or(0, Vec::len);
    if servers == 0 {
        obj.insert("dns_enabled".into(), json!(false));
    }
    Ok(net)
}

/// `setup NETNS`: ADD; the status Podman records for the container.
pub fn setup(netns: &str, stdin: &[u8]) -> Result<StatusBlock> {
    let exec = parse_exec(stdin)?;
    let conf = attach_config(&exec)?;
    let inv = invocation(Command::Add, &exec, netns)?;
    let out = nearhost_cni::handle(&inv, &serde_json::to_vec(&conf).expect("JSON serializes"))?
        .ok_or_else(|| CniError::new(code::DECODE_FAILURE, "ADD returned no result"))?;
    let (outcome, _) = result::decode("result", &out)?;
    let dns = exec.network.network_dns_servers.clone().unwrap_or_default();
    status(&outcome, &exec.network_options.interface_name, netns, dns)
}

/// `teardown NETNS`: DEL, which is idempotent (a container already gone, a
/// namespace already removed, are not errors).
pub fn teardown(netns: &str, stdin: &[u8]) -> Result<()> {
    let exec = parse_exec(stdin)?;
    let conf = attach_config(&exec)?;
    let inv = invocation(Command::Del, &exec, netns)?;
    nearhost_cni::handle(&inv, &serde_json::to_vec(&conf).expect("JSON serializes")).map(|_| ())
}

fn parse_exec(stdin: &[u8]) -> Result<PluginExec> {
    serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(code::DECODE_FAILURE, format!("reading netavark's request: {e}"))
    })
}

/// A bridge of its own per network, named after the network's ID as Podman
/// names its bridges after their number (`nhp` + 12 hex digits: 15 bytes).
fn bridge_name(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    format!("nhp{hex}")
}

/// The nearhost plugin config for a network's options (no addresses).
fn plugin_config(network: &str, opts: &BTreeMap<String, String>) -> Result<Value> {
    let mut conf = options::plugin_fields(opts)?;
    conf.insert("cniVersion".into(), json!(CNI_VERSION));
    conf.insert("name".into(), json!(network));
    conf.insert("type".into(), json!("nearhost"));
    if opts.get("datapath").map(String::as_str) == Some("bridge") {
        // The bridge holds the subnet's gateway, as Podman's bridge does.
        conf.insert("isGateway".into(), json!(true));
    }
    Ok(Value::Object(conf))
}

/// The config of one container's ADD/DEL: the network's options, Podman's
/// addresses as the previous result, the MAC and ports as capabilities.
fn attach_config(exec: &PluginExec) -> Result<Value> {
    let net = &exec.network;
    let opts = net.options.clone().unwrap_or_default();
    let per = &exec.network_options;
    if let Some((k, v)) = per.options.iter().flatten().next() {
        return Err(CniError::config(
            &format!("--network {}:{k}", net.name),
            format!("{v:?}: nearhost networks take no per-container options; set them on the network (podman network create -o)"),
        ));
    }
    let mut conf = plugin_config(&net.name, &opts)?;
    conf["prevResult"] = addresses(exec)?;
    let mut runtime = Map::new();
    if let Some(mac) = &per.static_mac {
        runtime.insert("mac".into(), json!(mac));
    }
    let ports = port_mappings(exec)?;
    if !ports.is_empty() {
        let datapath = options::datapath(&opts)?;
        if datapath != "bridge" {
            return Err(CniError::config(
                "port_mappings",
                format!("-p needs datapath bridge; this network's datapath is {datapath}, whose containers are reached at their own addresses"),
            ));
        }
        runtime.insert("portMappings".into(), Value::Array(ports));
    }
    conf["capabilities"] = json!({"mac": true, "portMappings": true});
    conf["runtimeConfig"] = Value::Object(runtime);
    Ok(conf)
}

/// Podman's addresses (one per subnet) as a CNI result, with a default route
/// through each family's gateway unless the network is `--internal`, and the
/// network's `--route`s.
fn addresses(exec: &PluginExec) -> Result<Value> {
    let net = &exec.network;
    let subnets = net.subnets.as_deref().unwrap_or_default();
    let ips = exec.network_options.static_ips.as_deref().unwrap_or_default();
    if ips.is_empty() {
        return Err(CniError::config(
            "static_ips",
            format!("Podman allocated no address on network {} (it needs --subnet)", net.name),
        ));
    }
    let mut out_ips = Vec::new();
    let mut routes = Vec::new();
    for ip in ips {
        let s = subnets.iter().find(|s| s.subnet.contains(ip)).ok_or_else(|| {
            CniError::new(
                code::ADDRESS_NOT_ALLOWED,
                format!("static_ips: {ip} is in none of network {}'s subnets", net.name),
            )
        })?;
        let address = format!("{ip}/{}", s.subnet.prefix_len());
        out_ips.push(match s.gateway {
            Some(gw) => json!({"address": address, "gateway": gw}),
            None => json!({"address": address}),
        });
        if let (Some(gw), false) = (s.gateway, net.internal) {
            let default = if ip.is_ipv6() { "::/0" } else { "0.0.0.0/0" };
            routes.push(json!({"dst": default, "gw": gw}));
        }
    }
    for r in net.routes.iter().flatten() {
        if ips.iter().any(|ip| ip.is_ipv6() == r.destination.addr().is_ipv6()) {
            routes.push(match r.gateway {
                Some(gw) => json!({"dst": r.destination, "gw": gw}),
                None => json!({"dst": r.destination}),
            });
        }
    }
    Ok(json!({"cniVersion": CNI_VERSION, "interfaces": [], "ips": out_ips, "routes": routes}))
}

/// netavark's port mappings as CNI `portMappings` (a range is one entry per port).
fn port_mappings(exec: &PluginExec) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for p in exec.port_mappings.iter().flatten() {
        for i in 0..p.range.max(1) {
            let (host, ctr) = (p.host_port.checked_add(i), p.container_port.checked_add(i));
            let (Some(host), Some(ctr)) = (host, ctr) else {
                return Err(CniError::config(
                    "port_mappings",
                    format!(
                        "{}:{} + {} ports runs past 65535",
                        p.host_port, p.container_port, p.range
                    ),
                ));
            };
            for proto in p.protocol.split(',') {
                let mut m = json!({"hostPort": host, "containerPort": ctr, "protocol": proto});
                if !p.host_ip.is_empty() {
                    m["hostIP"] = json!(p.host_ip);
                }
                out.push(m);
            }
        }
    }
    Ok(out)
}

fn invocation(command: Command, exec: &PluginExec, netns: &str) -> Result<Invocation> {
    let command = match command {
        Command::Add => "ADD",
        Command::Del => "DEL",
        _ => unreachable!("setup and teardown only"),
    };
    let ifname = exec.network_options.interface_name.clone();
    let id = exec.container_id.clone();
    let netns = netns.to_string();
    // No plugin is delegated to (Podman's addresses come as prevResult), but
    // ADD wants a CNI_PATH: this binary's own directory.
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| "/usr/libexec/netavark".into());
    Invocation::from_env(|k| match k {
        "CNI_PATH" => Some(own_dir.clone()),
        "CNI_COMMAND" => Some(command.into()),
        "CNI_CONTAINERID" => Some(id.clone()),
        "CNI_NETNS" => Some(netns.clone()),
        "CNI_IFNAME" => Some(ifname.clone()),
        _ => None,
    })
}

/// The container's interface (the one named `ifname` in `netns`) with its
/// addresses, as Podman reads it.
fn status(outcome: &Outcome, ifname: &str, netns: &str, dns: Vec<IpAddr>) -> Result<StatusBlock> {
    let index = outcome
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.in_sandbox)
        .ok_or_else(|| {
            CniError::new(code::DECODE_FAILURE, format!("ADD's result has no {ifname} in {netns}"))
        })?;
    let subnets = outcome
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| NetAddress { ipnet: ip.address, gateway: ip.gateway })
        .collect();
    let mac = outcome.interfaces[index].mac.clone().unwrap_or_default().to_ascii_lowercase();
    let mut interfaces = BTreeMap::new();
    interfaces.insert(ifname.to_string(), NetInterface { mac_address: mac, subnets });
    Ok(StatusBlock { dns_search_domains: Vec::new(), dns_server_ips: dns, interfaces })
}

fn text<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    obj.get(field).and_then(Value::as_str).ok_or_else(|| {
        CniError::new(code::DECODE_FAILURE, format!("the network has no {field:?} string"))
    })
}

fn string_map(v: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            CniError::config(field, format!("expected an object of strings, got {v}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(extra: Value) -> PluginExec {
        let mut v = json!({"container_id": "c1", "network": {"name": "fast", "driver": "nearhost",
            "options": {"datapath": "bridge", "bridge": "nhp0", "ipMasq": "true"},
            "subnets": [{"subnet": "198.18.5.0/24", "gateway": "198.18.5.1"},
                        {"subnet": "2001:2:5::/64", "gateway": "2001:2:5::1"}],
            "routes": [{"destination": "198.19.0.0/16", "gateway": "198.18.5.254"}]},
            "network_options": {"interface_name": "eth0", "static_ips": ["198.18.5.7", "2001:2:5::7"]}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn podmans_addresses_become_the_previous_result_with_default_routes() {
        let conf = attach_config(&exec(json!({}))).unwrap();
        assert_eq!(
            conf["prevResult"]["ips"],
            json!([{"address": "198.18.5.7/24", "gateway": "198.18.5.1"},
                   {"address": "2001:2:5::7/64", "gateway": "2001:2:5::1"}])
        );
        assert_eq!(
            conf["prevResult"]["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "198.18.5.1"}, {"dst": "::/0", "gw": "2001:2:5::1"},
                   {"dst": "198.19.0.0/16", "gw": "198.18.5.254"}])
        );
        assert_eq!(conf["isGateway"], json!(true));
        assert_eq!(conf["ipMasq"], json!(true));
    }

    #[test]
    fn an_internal_network_gets_no_default_route() {
        let mut e = exec(json!({}));
        e.network.internal = true;
        let conf = attach_config(&e).unwrap();
        let routes = conf["prevResult"]["routes"].as_array().unwrap();
        assert!(routes.iter().all(|r| r["dst"] != "0.0.0.0/0" && r["dst"] != "::/0"), "{routes:?}");
    }

    #[test]
    fn port_ranges_and_protocol_lists_become_one_mapping_per_port() {
        let e = exec(json!({"port_mappings": [
            {"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "tcp,udp", "range": 2}]}));
        let conf = attach_config(&e).unwrap();
        let ports: Vec<(u64, u64, &str)> = conf["runtimeConfig"]["portMappings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["hostPort"].as_u64().unwrap(),
                    m["containerPort"].as_u64().unwrap(),
                    m["protocol"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [(8080, 80, "tcp"), (8080, 80, "udp"), (8081, 81, "tcp"), (8081, 81, "udp")]
        );
    }

    #[test]
    fn bad_requests_are_refused_naming_what_is_wrong() {
        let mut e = exec(json!({}));
        e.network_options.static_ips = Some(vec!["198.20.0.1".parse().unwrap()]);
        let err = attach_config(&e).unwrap_err();
        assert_eq!(err.code, code::ADDRESS_NOT_ALLOWED);
        assert!(err.msg.contains("198.20.0.1 is in none of network fast's subnets"), "{}", err.msg);

        let mut e = exec(json!({"port_mappings": [{"container_port": 80, "host_port": 8080}]}));
        e.network.options = Some(BTreeMap::from([("datapath".into(), "macvlan".into())]));
        let err = attach_config(&e).unwrap_err();
        assert!(
            err.msg.contains("-p needs datapath bridge; this network's datapath is macvlan"),
            "{}",
            err.msg
        );

        let mut e = exec(json!({}));
        e.network_options.options = Some(BTreeMap::from([("vlan".into(), "5".into())]));
        let err = attach_config(&e).unwrap_err();
        assert!(err.msg.starts_with("--network fast:vlan: \"5\""), "{}", err.msg);

        let e = exec(
            json!({"port_mappings": [{"container_port": 65535, "host_port": 65535, "range": 2}]}),
        );
        assert!(attach_config(&e).unwrap_err().msg.contains("runs past 65535"));
    }

    #[test]
    fn a_bridge_is_named_after_the_network_id_within_the_kernels_limit() {
        let name = bridge_name("2ac70c7d230e86cf56d8e659c5fc2e82781750f28b75b7b5291ebf42e1ed6bf4");
        assert_eq!(name, "nhp2ac70c7d230e");
        assert!(nearhost_datapath::validate_ifname(&name).is_ok());
    }
}
