//! The node agent's SR-IOV metrics come from nearhost_datapath::vf_inventory:
//! here it reads the guest's real sysfs (igb's sriov_totalvfs and virtfn links).

use nearhost_kernel::sysfs::Sysfs;
use serde_json::json;

use crate::support::nics::{Nics, VFS_PER_PF};
use crate::support::*;
use crate::*;

#[test]
#[ignore = "kernel lab: needs the emulated igb NICs (scripts/kernel-lab)"]
fn the_vf_inventory_reads_the_real_sysfs() {
    let n = Nics::take();
    // With bonding loaded (as on most servers), /sys/class/net holds the file
    // bonding_masters: the inventory once failed on it, and the agent's
    // SR-IOV metrics with it.
    assert!(kernel_has("bond"), "the lab's kernel has bonding");
    assert!(std::path::Path::new("/sys/class/net/bonding_masters").is_file());
    let a = n.pfs[0].clone();
    let inventory =
        || nearhost_datapath::vf_inventory(&Sysfs::from_env(), n.claims.path()).unwrap();
    let of = |pf: &str| {
        inventory()
            .into_iter()
            .find(|p| p.pf == pf)
            .unwrap_or_else(|| panic!("no {pf} in {:?}", inventory()))
    };
    let e = VFS_PER_PF as u32;
    for pf in &n.pfs {
        let p = of(pf);
        assert_eq!((p.total, p.enabled, p.free, p.claimed.len()), (7, e, e, 0), "{p:?}");
    }
    let nic = of(&n.nic);
    assert_eq!(
        (nic.total, nic.enabled, nic.free),
        (7, 0, 0),
        "SR-IOV capable, no VFs enabled: {nic:?}"
    );
    let c = Netns::new("c");
    let conf = n.conf("iv", "sriov", 69, json!({"pf": a}));
    let r = n.call("ADD", "inv-1", &c.path()).conf(&conf).expect_ok();
    let p = of(&a);
    assert_eq!((p.free, p.claimed.len()), (e - 1, 1), "{p:?}");
    assert_eq!(p.claimed[0].container_id, "inv-1");
    assert_eq!(p.claimed[0].pci, pci_in(&r, "eth0"));
    n.call("DEL", "inv-1", &c.path()).conf(&with_prev(&conf, &r)).expect_ok();
    assert_eq!(of(&a).free, e);
}
