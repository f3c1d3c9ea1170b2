//! sriov-bond: one VF from each of two PFs — two NICs, cabled to two switches —
//! joined in a Linux bond created inside the container, so a cable, NIC or
//! switch can fail without the container noticing. The bond is named
//! `CNI_IFNAME` and carries the addresses; the members are `IFNAME` + `m0`/`m1`.
//!
//! MACs. A bond normally gives every member its own MAC, but a VF may not change
//! its MAC from inside (an untrusted VF is refused — igb answers EADDRNOTAVAIL —
//! and with spoof checking the PF drops frames from any MAC but the one it
//! assigned). So every member's MAC is given to its VF *through its PF*
//! (`IFLA_VF_MAC`), and the VF's driver is made to take it before the bond sees
//! the VF:
//!
//! - active-backup: each member has a MAC of its own (the first the bond's, the
//!   other a random one), the first is the bond's primary, and the bond
//!   follows the active member (`fail_over_mac=active`), announcing a
//!   failover with gratuitous ARP and
//!   unsolicited NA. One MAC on both members would be wrong here: a PF's
//!   embedded switch delivers frames for a MAC to its own VF holding it, so a
//!   second bonded container on the same two PFs would receive its peer's
//!   frames on its inactive member, which drops them (seen on igb).
//! - balance-xor and 802.3ad need one MAC on all members by design (every
//!   member is active, so the embedded switch's choice does no harm): both VFs
//!   get the bond's MAC from their PFs.
//!
//! Where a PF refuses to assign a MAC (every stand-in device), each VF keeps its
//! own; active-backup works the same, while balance-xor and 802.3ad then need
//! the bond to set the VFs' MACs itself, which needs `trust: true` on real VFs.

use std::os::fd::AsFd;

use nearhost_kernel::link::{random_mac, temp_link_name, BondMode, Mac, NewLink, NewLinkKind};
use nearhost_kernel::sriov::VfSetting;
use serde_json::Value;

use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::drivers::sriov::{check_mtu, check_pf_settings};
use crate::error::{join, DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::guard::LinkGuard;
use crate::moved;
use crate::vf::{self, VfClaim};
use crate::vf_lease::{self, VfLease, Want};
use crate::vf_settings::VfOptions;

pub const REGISTRATION: Registration = Registration { name: "sriov-bond", build };

const MODES: &[(&str, BondMode)] = &[
    ("active-backup", BondMode::ActiveBackup),
    ("balance-xor", BondMode::BalanceXor),
    ("802.3ad", BondMode::Lacp),
];

/// How often the bond checks its members' carrier (ms), unless `miimon` says.
const DEFAULT_MIIMON: u32 = 100;

struct SriovBond {
    pfs: [String; 2],
    mode: BondMode,
    miimon: u32,
    opts: VfOptions,
    mac: Option<Mac>,
    mtu: Option<u32>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    let pfs =
        match f.strings("pfs")? {
            None => return Err(DatapathError::config(
                "pfs",
                "is required: the two PFs to take one VF each from, e.g. [\"ens1f0\", \"ens2f0\"]",
            )),
            Some(list) => two_pfs(&list)?,
        };
    if f.str("pf")?.is_some() || f.u32("vf")?.is_some() {
        return Err(DatapathError::config(
            "pfs",
            "sriov-bond takes a VF from each of the two \"pfs\"; \"pf\" and \"vf\" do not apply",
        ));
    }
    Ok(Box::new(SriovBond {
        pfs,
        mode: f.choice("mode", MODES)?.unwrap_or(BondMode::ActiveBackup),
        miimon: f.u32("miimon")?.unwrap_or(DEFAULT_MIIMON),
        opts: VfOptions::parse(&f)?,
        mac: f.str("mac")?.map(|m| fields::parse_unicast_mac("mac", m)).transpose()?,
        mtu: f.mtu("mtu")?,
    }))
}

fn two_pfs(list: &[&str]) -> Result<[String; 2]> {
    let [a, b] = list else {
        return Err(DatapathError::config(
            "pfs",
            format!("needs exactly two PFs, got {}", list.len()),
        ));
    };
    for pf in [a, b] {
        crate::fields::validate_ifname(pf)
            .map_err(|r| DatapathError::config("pfs", format!("{pf:?} {r}")))?;
    }
    if a == b {
        return Err(DatapathError::config(
            "pfs",
            format!("names {a} twice; the two VFs must come from two PFs"),
        ));
    }
    Ok([a.to_string(), b.to_string()])
}

/// The members' names in the container: `IFNAME` (cut to fit) + `m0` / `m1`.
fn member_name(ifname: &str, n: usize) -> String {
    // At most 13 bytes of the bond's name (IFNAMSIZ less "mN"), cut on a
    // character boundary: CNI_IFNAME may hold multi-byte characters.
    let mut end = ifname.len().min(13);
    while !ifname.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}m{n}", &ifname[..end])
}

impl Datapath for SriovBond {
    fn sandbox_names(&self, ifname: &str) -> Vec<String> {
        vec![ifname.to_string(), member_name(ifname, 0), member_name(ifname, 1)]
    }

    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        let sysfs = nearhost_kernel::sysfs::Sysfs::from_env();
        for pf in &self.pfs {
            check_mtu(self.mtu, &vf_lease::pf_link(host, "pfs", pf)?)?;
            vf::discover(&sysfs, "pfs", pf)?;
        }
        Ok(())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let names = self.sandbox_names(req.ifname);
        let store = moved::claims_of::<VfClaim>();
        let settings = self.opts.settings(None);
        let wants: Vec<Want<'_>> = self
            .pfs
            .iter()
            .zip(&names[1..])
            .map(|(pf, m)| Want {
                field: "pfs",
                pf,
                vf: None,
                sandbox_name: m.clone(),
                settings: settings.clone(),
                userspace: None,
            })
            .collect();
        let owner = (req.network, req.container_id, req.ifname);
        let mut leases = vf_lease::claim(host, sb, &store, owner, &wants)?;
        let bond_mac = req.mac.or(self.mac).unwrap_or_else(random_mac);
        let follow_active = self.mode == BondMode::ActiveBackup;
        for (i, lease) in leases.iter_mut().enumerate() {
            let mac = if i == 0 || !follow_active { bond_mac } else { random_mac() };
            lease.try_admin_mac(host, mac)?;
        }
        let members = self.take_members(host, sb, &mut leases, &settings)?;
        // In active-backup the bond follows its active member's MAC
        // (fail_over_mac=active), the primary's whenever it has a link. The
        // PF may have refused the MAC asked for above, so the bond starts
        // with the primary's actual MAC: the result then names the MAC the
        // bond has once the primary is active, however late its link comes up.
        // Where the PF took the MAC, that is the primary's once its driver
        // has reset (igbvf does so asynchronously after the link cycle: read
        // from the link too early, it is still the old one).
        let pf_took = leases[0].claim().applied.iter().find_map(|s| match s {
            VfSetting::Mac(m) => Some(*m),
            _ => None,
        });
        let bond_mac = match (follow_active, pf_took) {
            (true, Some(m)) => m,
            (true, None) => sb
                .nl
                .link_by_index(members[0])
                .ctx(|| "read the first member's MAC".into())?
                .and_then(|l| l.mac)
                .unwrap_or(bond_mac),
            (false, _) => bond_mac,
        };
        let (bond_index, bond_guard) = self.create_bond(sb, bond_mac)?;
        for (index, lease) in members.iter().zip(&leases) {
            let name = &lease.claim().dev.sandbox_name;
            sb.nl
                .set_master(*index, Some(bond_index))
                .ctx(|| format!("enslave {name} to the bond"))?;
        }
        if follow_active {
            // The first PF's VF carries the bond's MAC: it is active whenever
            // it has a link, whichever VF's link came up first.
            sb.nl
                .set_bond_primary(bond_index, members[0])
                .ctx(|| "make the first member the bond's primary".into())?;
        }
        let routes = container::ipam_routes(req);
        let addresses = req.addresses.iter().map(|a| a.address).collect();
        let setup = Setup {
            temp_index: bond_index,
            ifname: req.ifname,
            mac: None,
            addresses,
            routes: routes.clone(),
            neighbours: Vec::new(),
        };
        let bond = container::finish(sb, &setup)?;
        let mut outcome = Outcome::attached(
            Vec::new(),
            Iface::of(&bond, true),
            &req.addresses_with_gateways(),
            &routes,
        );
        outcome.interfaces.extend(
            leases.iter().map(|l| member_iface(sb, l.claim())).collect::<Result<Vec<_>>>()?,
        );
        bond_guard.disarm();
        leases.into_iter().for_each(VfLease::keep);
        Ok(outcome)
    }

    fn del(
        &self, host: &mut Namespace, mut sb: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        let mut errors = Vec::new();
        if let Some(sb) = sb.as_deref_mut() {
            // Deleting the bond releases its members (and gives them their MACs back).
            errors.extend(container::delete_iface(sb, req.ifname).err());
        }
        errors.extend(moved::release_owned::<VfClaim>(host, sb, req).err());
        join(errors)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        let (bond, claims) = moved::check_claimed::<VfClaim>(sb, req, None, 2, "VF")?;
        if bond.kind.as_deref() != Some("bond") || bond.bond_mode != Some(self.mode) {
            return Err(DatapathError::CheckFailed(format!(
                "{} is a {:?} link in mode {:?}, config says a bond in mode {:?}",
                req.ifname, bond.kind, bond.bond_mode, self.mode
            )));
        }
        for c in &claims {
            let name = &c.dev.sandbox_name;
            let member = sb.nl.link_by_name(name).ctx(|| format!("look up {name}"))?;
            if member.and_then(|m| m.master) != Some(bond.index) {
                return Err(DatapathError::CheckFailed(format!(
                    "{name} (VF {} of {}) is not a member of bond {}",
                    c.vf, c.pf, req.ifname
                )));
            }
            check_pf_settings(host, c)?;
        }
        Ok(())
    }
}

impl SriovBond {
    /// Applies the PF settings, moves both VFs in and names them; their indexes.
    fn take_members(
        &self, host: &mut Namespace, sb: &mut Namespace, leases: &mut [VfLease],
        settings: &[nearhost_kernel::sriov::VfSetting],
    ) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for lease in leases {
            let index = lease.take(host, sb, settings)?;
            let name = &lease.claim().dev.sandbox_name;
            sb.nl.rename_link(index, name).ctx(|| {
                format!("rename VF {} of {} to {name}", lease.claim().vf, lease.claim().pf)
            })?;
            out.push(index);
        }
        Ok(out)
    }

    /// Creates the bond inside the container (under a temporary name, see
    /// DESIGN: created in place). The guard deletes it, releasing the members.
    fn create_bond(&self, sb: &mut Namespace, mac: Mac) -> Result<(u32, LinkGuard)> {
        let follow_active = self.mode == BondMode::ActiveBackup;
        let spec = NewLink {
            name: temp_link_name(),
            kind: NewLinkKind::Bond {
                mode: self.mode,
                miimon: self.miimon,
                fail_over_mac_active: follow_active,
            },
            netns: Some(sb.ns.as_fd()),
            mtu: self.mtu,
            // With fail_over_mac=active the bond takes the active member's MAC.
            mac: (!follow_active).then_some(mac),
        };
        sb.nl.create_link(&spec).map_err(|e| match e.errno() {
            Some(libc::EOPNOTSUPP) => DatapathError::Unsupported(
                "this kernel has no bonding support (module not built in and not loadable); use a kernel with CONFIG_BONDING".into(),
            ),
            _ => DatapathError::Kernel { context: "create the bond in the container".into(), source: e },
        })?;
        let bond =
            sb.nl.require_link(&spec.name).ctx(|| format!("look up the new bond {}", spec.name))?;
        Ok((bond.index, LinkGuard::new(&sb.ns, bond.index, "bond")))
    }
}

/// A member in the result: in the sandbox, with its VF's PCI address.
fn member_iface(sb: &mut Namespace, c: &VfClaim) -> Result<Iface> {
    let name = &c.dev.sandbox_name;
    let link = sb.nl.require_link(name).ctx(|| format!("read back {name}"))?;
    Ok(Iface::of(&link, true).with_pci(Some(c.pci.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_named_after_the_bond_within_ifnamsiz() {
        assert_eq!(member_name("eth0", 1), "eth0m1");
        assert_eq!(member_name("abcdefghijklmno", 0), "abcdefghijklmm0");
        assert_eq!(member_name("ééééééé", 1), "éééééém1", "cut on a character boundary");
        assert!(build(&json!({"pfs": ["a", "b"], "mode": "802.3ad", "miimon": 50})).is_ok());
    }
}
