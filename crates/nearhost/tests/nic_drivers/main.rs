//! The SR-IOV, bonded-VF and whole-NIC datapaths on real NIC drivers: qemu's
//! emulated Intel 82576 (`-device igb`), driven by the kernel's igb (PF) and
//! igbvf (VF) drivers in the kernel lab's guest (crates/testkit/src/nics.rs).
//! No fake sysfs: the plugin reads the guest's /sys, sends its `IFLA_VF_*`
//! settings to the igb driver, and reads them back from the PF's VF report,
//! as on a server. Every test is "ignored" on a machine without those NICs and
//! runs in scripts/kernel-lab, where a missing NIC fails it.

use nearhost_testkit as support;

mod host_reach;
mod hostdev;
mod inventory;
mod sriov;
mod sriov_bond;
mod tune;
mod vfio;

use std::time::Duration;

use serde_json::Value;
use support::nics::Nics;
pub use support::sriov::with_prev;
use support::*;

/// The PF's VF report in one line: what a test compares before and after.
pub fn summary(info: &Value) -> String {
    // iproute2 prints a VF's VLAN as `vlan_list` (with the protocol) or, older,
    // as `vlan`/`qos`; the rate as `rate.max_tx`/`min_tx` or `max_tx_rate`.
    let (vlan, qos, proto) = match info["vlan_list"].as_array().and_then(|l| l.first()) {
        Some(v) => (v["vlan"].as_u64(), v["qos"].as_u64(), v["protocol"].as_str()),
        None => (info["vlan"].as_u64(), info["qos"].as_u64(), None),
    };
    let max = info["rate"]["max_tx"].as_u64().or(info["max_tx_rate"].as_u64()).unwrap_or(0);
    let min = info["rate"]["min_tx"].as_u64().or(info["min_tx_rate"].as_u64()).unwrap_or(0);
    let on = |k: &str| match info[k].as_bool() {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    format!(
        "mac {} vlan {} qos {}{} spoofchk {} trust {} rate {min}-{max} state {}",
        info["address"].as_str().unwrap_or("?"),
        vlan.unwrap_or(0),
        qos.unwrap_or(0),
        proto.map(|p| format!(" {p}")).unwrap_or_default(),
        on("spoofchk"),
        on("trust"),
        info["link_state"].as_str().unwrap_or("?"),
    )
}

/// Every VF's PF settings in one line each.
pub fn summaries(n: &Nics) -> Vec<String> {
    n.all_vf_info().iter().map(summary).collect()
}

/// [`summaries`] as DEL must leave them, compared with `before`. A VF without
/// an administrative MAC is reported by igb with 00:00:00:00:00:00 until its
/// driver registers its own MAC (when it first opens or resets), then with
/// that one: both mean "no MAC assigned", so where `before` says 00:00:… and
/// the PF now reports the VF interface's own MAC, it counts as 00:00:….
pub fn restored(n: &Nics, before: &[String]) -> Vec<String> {
    const NONE: &str = "mac 00:00:00:00:00:00 ";
    let own: Vec<String> = host_vfs(n).into_iter().map(|(_, _, mac)| mac).collect();
    summaries(n)
        .into_iter()
        .enumerate()
        .map(|(i, now)| match (before.get(i), own.get(i)) {
            (Some(b), Some(mac))
                if b.starts_with(NONE) && now.starts_with(&format!("mac {mac} ")) =>
            {
                format!("{NONE}{}", &now[format!("mac {mac} ").len()..])
            }
            _ => now,
        })
        .collect()
}

/// A summary without its MAC (a VF in a container registers its own MAC with
/// the PF when its driver opens it, whenever that is).
pub fn without_mac(summaries: &[String]) -> Vec<String> {
    summaries.iter().map(|s| s.splitn(3, ' ').nth(2).unwrap_or("").to_string()).collect()
}

/// The VF number and PF of the interface with PCI address `pci` in a result.
pub fn vf_of(n: &Nics, pci: &str) -> (String, u32) {
    for pf in &n.pfs {
        if let Some(v) = n.vfs(pf).iter().find(|v| v.pci == pci) {
            return (pf.clone(), v.index);
        }
    }
    panic!("{pci} is no VF of {:?}", n.pfs)
}

/// The PCI address of interface `name` in an ADD result.
pub fn pci_in(result: &Value, name: &str) -> String {
    result["interfaces"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == name))
        .and_then(|i| i["pciID"].as_str())
        .unwrap_or_else(|| panic!("no {name} with a pciID in {result}"))
        .to_string()
}

/// The driver of `ifname` in `ns`, as ethtool reports it.
pub fn driver_in(ns: &Netns, ifname: &str) -> String {
    let out = ns.exec(&["ethtool", "-i", ifname]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("driver: "))
        .unwrap_or("?")
        .to_string()
}

/// `from` reaches `ip` within 30 s (a fresh igbvf link takes seconds to get carrier).
pub fn reaches(from: &Netns, ip: &str) -> bool {
    eventually(Duration::from_secs(30), || from.ping(ip))
}

/// The interfaces of the VFs of both PFs in the guest's namespace: (name, mtu, mac).
pub fn host_vfs(n: &Nics) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for pf in &n.pfs {
        for v in n.vfs(pf) {
            let name =
                v.netdev.unwrap_or_else(|| format!("VF {} of {pf}: not in the host", v.index));
            let l = n.link(&name).unwrap_or_default();
            out.push((
                name,
                l["mtu"].as_u64().unwrap_or(0),
                l["address"].as_str().unwrap_or("?").into(),
            ));
        }
    }
    out
}
