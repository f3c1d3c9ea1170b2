//! How attachments, networks and gc reports are shown: text for people, JSON
//! (the CNI result included unchanged) for scripts.

use std::io::Write;
use std::path::Path;

use nearhost_attach::netdef::Entry;
use nearhost_attach::{Attachment, GcReport, Listed, Status, Target, TargetKind};
use nearhost_datapath::{held_by_userspace_driver, Held};
use serde_json::{json, Value};

pub fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = out.write_all(b"\n");
}

/// `web (docker 3f2a1b0c4d5e)`, `pid 1234`, `/run/netns/x`.
pub fn who(t: &Target) -> String {
    match t.kind {
        TargetKind::Docker | TargetKind::Podman => {
            let kind = if t.kind == TargetKind::Docker { "docker" } else { "podman" };
            format!("{} ({kind} {})", t.name, &t.container_id[..t.container_id.len().min(12)])
        }
        TargetKind::Pid | TargetKind::Netns => t.name.clone(),
    }
}

pub fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "no addresses".into()
    } else {
        items.join(", ")
    }
}

fn status_words(s: &Status) -> (&'static str, String) {
    match s {
        Status::Attached => ("attached", String::new()),
        Status::Gone(why) => ("gone", why.clone()),
        Status::Unknown(why) => ("unknown", why.clone()),
        Status::Incomplete => ("incomplete", "an attach was interrupted".into()),
        Status::Differs(why) => ("differs", why.clone()),
    }
}

pub fn attachment_json(a: &Attachment, status: Option<&Status>) -> Value {
    let mut v = json!({
        "network": a.network, "file": a.file, "datapath": a.datapath, "ifname": a.ifname,
        "target": a.target, "addresses": a.addresses(), "result": a.result, "created": a.created,
    });
    let held: Vec<_> = a
        .result
        .iter()
        .flat_map(|r| r.get("interfaces").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|i| i.get("pciID")?.as_str().and_then(held_by_userspace_driver))
        .map(|h| json!({"pci": h.pci, "driver": h.driver, "iommu_group": h.iommu_group, "device_nodes": h.device_nodes, "run_options": h.run_options()}))
        .collect();
    if !held.is_empty() {
        v["userspace_devices"] = json!(held);
    }
    if let Some(s) = status {
        let (word, reason) = status_words(s);
        v["status"] = json!(word);
        if !reason.is_empty() {
            v["reason"] = json!(reason);
        }
    }
    v
}

/// What `attach` did, from the CNI result: the container interface, the host
/// side (bridge, veth end) if any, addresses and routes.
pub fn attached_text(a: &Attachment) -> String {
    attached_text_with(a, held_by_userspace_driver)
}

/// [`attached_text`] with the lookup of devices held by a userspace driver given.
fn attached_text_with(a: &Attachment, held: impl Fn(&str) -> Option<Held>) -> String {
    let empty = Value::Null;
    let r = a.result.as_ref().unwrap_or(&empty);
    let list = |k: &str| r.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out = format!("attached {} to network {}\n", who(&a.target), a.network);
    let interfaces = list("interfaces");
    for i in interfaces.iter().filter(|i| i.get("sandbox").is_some()) {
        let mtu = i.get("mtu").map(|m| format!(", MTU {m}")).unwrap_or_default();
        out += &format!(
            "  interface  {} ({}), MAC {}{mtu}, in {}\n",
            s(i, "name"),
            a.datapath,
            s(i, "mac"),
            a.target.netns
        );
    }
    // A device handed to a userspace driver: what the container must have had
    // from its start (device nodes cannot be added to a running container).
    for held in interfaces.iter().filter_map(|i| i.get("pciID")?.as_str()).filter_map(&held) {
        out += &format!(
            "  device     {} held by {}: its application needs {} and {}; a container started without them cannot drive it (podman/docker run {})\n",
            held.pci,
            held.driver,
            held.device_nodes.join(", "),
            held.also,
            held.run_options()
        );
    }
    let host: Vec<String> =
        interfaces.iter().filter(|i| i.get("sandbox").is_none()).map(|i| s(i, "name")).collect();
    if !host.is_empty() {
        out += &format!("  host side  {}\n", host.join(", "));
    }
    for ip in list("ips") {
        let gw = ip
            .get("gateway")
            .map(|g| format!(", gateway {}", g.as_str().unwrap_or_default()))
            .unwrap_or_default();
        out += &format!("  address    {}{gw}\n", s(&ip, "address"));
    }
    for route in list("routes") {
        let via = route
            .get("gw")
            .map(|g| format!(" via {}", g.as_str().unwrap_or_default()))
            .unwrap_or_default();
        out += &format!("  route      {}{via}\n", s(&route, "dst"));
    }
    out
}

/// Rows padded into columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row.clone());
    }
    out
}

pub fn ls_table(listed: &[Listed]) -> String {
    if listed.is_empty() {
        return "no attachments\n".into();
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| {
            let a = &l.attachment;
            let (word, reason) = status_words(&l.status);
            let status = match &l.status {
                Status::Attached => word.to_string(),
                Status::Gone(_) | Status::Incomplete => {
                    format!("{word}: {reason} (`nearhost gc` cleans it up)")
                }
                Status::Unknown(_) | Status::Differs(_) => format!("{word}: {reason}"),
            };
            vec![
                who(&a.target),
                a.network.clone(),
                a.ifname.clone(),
                a.addresses().join(","),
                a.datapath.clone(),
                status,
            ]
        })
        .collect();
    table(&["CONTAINER", "NETWORK", "INTERFACE", "ADDRESSES", "DATAPATH", "STATUS"], &rows)
}

pub fn gc_text(r: &GcReport) -> String {
    let mut out = String::new();
    for l in &r.removed {
        let (_, reason) = status_words(&l.status);
        let a = &l.attachment;
        out += &format!(
            "released {} from network {} ({}; {})\n",
            who(&a.target),
            a.network,
            reason,
            or_none(&a.addresses())
        );
    }
    for l in &r.kept {
        let (_, reason) = status_words(&l.status);
        out += &format!(
            "kept {} on network {}: cannot tell whether it is gone ({reason})\n",
            who(&l.attachment.target),
            l.attachment.network
        );
    }
    for (l, e) in &r.failed {
        out += &format!(
            "could not release {} from network {}: {e}\n",
            who(&l.attachment.target),
            l.attachment.network
        );
    }
    if out.is_empty() {
        out = "nothing to clean up\n".into();
    }
    out
}

pub fn net_entry_json(e: &Entry) -> Value {
    match &e.network {
        Ok(n) => {
            let valid = n.validate();
            json!({"name": n.name, "file": e.file, "datapath": n.datapath(), "subnets": n.subnets(),
                   "valid": valid.is_ok(), "error": valid.err()})
        }
        Err(why) => json!({"name": Value::Null, "file": e.file, "valid": false, "error": why}),
    }
}

pub fn net_table(dir: &Path, entries: &[Entry]) -> String {
    if entries.is_empty() {
        return format!("no network definitions in {}\n", dir.display());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let file = e.file.display().to_string();
            match &e.network {
                Ok(n) => {
                    let note = n
                        .validate()
                        .err()
                        .map(|why| format!("  INVALID: {why}"))
                        .unwrap_or_default();
                    vec![n.name.clone(), n.datapath(), n.subnets().join(","), file + &note]
                }
                Err(why) => {
                    vec!["-".into(), "-".into(), "-".into(), format!("{file}  INVALID: {why}")]
                }
            }
        })
        .collect();
    table(&["NAME", "DATAPATH", "SUBNETS", "FILE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_held_by_vfio_pci_is_shown_with_what_the_container_needs() {
        let a: Attachment = serde_json::from_value(json!({
            "version": 1, "network": "dpdk", "file": "/etc/nearhost/networks/dpdk.json",
            "target": {"kind": "podman", "name": "app", "containerId": "c0ffee",
                       "netns": "/proc/42/ns/net", "netnsInode": 7},
            "ifname": "eth1", "datapath": "sriov", "cniArgs": "", "cniVersion": "1.1.0",
            "plugins": [], "created": 0,
            "result": {"interfaces": [{"name": "eth1", "mac": "02:18:71:00:00:01",
                                       "sandbox": "/proc/42/ns/net", "pciID": "0000:01:10.0"}],
                       "ips": [{"address": "198.18.71.100/24", "interface": 0}]}
        }))
        .unwrap();
        let held = |pci: &str| {
            Some(Held {
                pci: pci.into(),
                driver: "vfio-pci".into(),
                iommu_group: Some(12),
                device_nodes: vec!["/dev/vfio/12".into(), "/dev/vfio/vfio".into()],
                also: "hugepages".into(),
            })
        };
        let text = attached_text_with(&a, held);
        assert!(
            text.contains("  device     0000:01:10.0 held by vfio-pci: its application needs /dev/vfio/12, /dev/vfio/vfio and hugepages; a container started without them cannot drive it (podman/docker run --device /dev/vfio/12 --device /dev/vfio/vfio -v /dev/hugepages:/dev/hugepages --ulimit memlock=-1)\n"),
            "{text}"
        );
        assert!(text.contains("  address    198.18.71.100/24\n"), "{text}");
        assert!(!attached_text_with(&a, |_| None).contains("device "), "nothing held: no line");
    }
}
