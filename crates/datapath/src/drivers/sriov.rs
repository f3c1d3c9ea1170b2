//! sriov: an SR-IOV virtual function moved into the container — its own queues
//! and DMA, no software switch on the way. The PF applies the per-VF settings
//! (VLAN, spoof checking, trust, rates, link state, admin MAC); node-wide
//! claims keep concurrent ADDs, of any network, from sharing a VF. With
//! `"deviceDriver": "vfio-pci"` the VF stays in the host, handed to vfio-pci
//! for a DPDK application in the container ([`crate::userspace`]).

use nearhost_kernel::link::{Link, Mac};
use nearhost_kernel::sriov::VfSetting;
use serde_json::Value;

use crate::claims::ClaimStore;
use crate::container::{self, Setup};
use crate::context::{AddRequest, CheckRequest, DelRequest, Iface, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, KernelContext, Result};
use crate::fields::{self, Fields};
use crate::moved;
use crate::userspace;
use crate::vf::{self, VfClaim};
use crate::vf_lease::{self, VfLease, Want};
use crate::vf_settings::{self, VfOptions};

pub const REGISTRATION: Registration = Registration { name: "sriov", build };

struct Sriov {
    /// The PFs to take a VF from, in order of preference.
    pfs: Vec<String>,
    /// `pf` or `pfs`: where they came from, for error messages.
    field: &'static str,
    vf: Option<u32>,
    opts: VfOptions,
    mac: Option<Mac>,
    mtu: Option<u32>,
    /// Handed to a userspace driver instead of moved in as an interface.
    userspace: Option<userspace::Options>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    let (field, pfs) = pf_names(&f)?;
    let vf = f.u32("vf")?;
    if vf.is_some() && pfs.len() > 1 {
        return Err(DatapathError::config(
            "vf",
            "a fixed VF number needs a single PF: use \"pf\", not a list in \"pfs\"",
        ));
    }
    let userspace = userspace::Options::parse(&f, "VF")?;
    Ok(Box::new(Sriov {
        pfs,
        field,
        vf,
        opts: VfOptions::parse(&f)?,
        mac: f.str("mac")?.map(|m| fields::parse_unicast_mac("mac", m)).transpose()?,
        mtu: f.mtu("mtu")?,
        userspace,
    }))
}

/// `pf` or `pfs` (exactly one of them), each a valid interface name.
fn pf_names(f: &Fields<'_>) -> Result<(&'static str, Vec<String>)> {
    match (f.ifname("pf")?, f.strings("pfs")?) {
        (Some(_), Some(_)) => {
            Err(DatapathError::config("pfs", "give either \"pf\" or \"pfs\", not both"))
        }
        (Some(pf), None) => Ok(("pf", vec![pf.to_string()])),
        (None, Some(list)) if list.is_empty() => {
            Err(DatapathError::config("pfs", "is empty; name at least one PF"))
        }
        (None, Some(list)) => {
            for pf in &list {
                crate::fields::validate_ifname(pf)
                    .map_err(|r| DatapathError::config("pfs", format!("{pf:?} {r}")))?;
            }
            Ok(("pfs", list.into_iter().map(str::to_string).collect()))
        }
        (None, None) => Err(DatapathError::config(
            "pf",
            "is required: the physical function (PF) whose VFs to use",
        )),
    }
}

impl Sriov {
    /// A VF from the first PF that has a free one.
    fn claim(
        &self, host: &mut Namespace, sb: &Namespace, store: &ClaimStore, req: &AddRequest<'_>,
        settings: &[VfSetting],
    ) -> Result<VfLease> {
        let mut busy = Vec::new();
        for pf in &self.pfs {
            let want = Want {
                field: self.field,
                pf,
                vf: self.vf,
                sandbox_name: req.ifname.to_string(),
                settings: settings.to_vec(),
                userspace: self.userspace.as_ref().map(|u| u.driver.as_str()),
            };
            let owner = (req.network, req.container_id, req.ifname);
            match vf_lease::claim(host, sb, store, owner, &[want]) {
                Ok(mut leases) => return Ok(leases.remove(0)),
                Err(DatapathError::Busy(why)) => busy.push(why),
                Err(e) => return Err(e),
            }
        }
        Err(DatapathError::Busy(busy.join("; ")))
    }
}

impl Datapath for Sriov {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        let sysfs = nearhost_kernel::sysfs::Sysfs::from_env();
        for pf in &self.pfs {
            let link = vf_lease::pf_link(host, self.field, pf)?;
            check_mtu(self.mtu, &link)?;
            vf::discover(&sysfs, self.field, pf)?;
        }
        match &self.userspace {
            Some(u) => u.check_host(&sysfs),
            None => Ok(()),
        }
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let mac = req.mac.or(self.mac);
        let settings = self.opts.settings(mac);
        let store = moved::claims_of::<VfClaim>();
        let mut lease = self.claim(host, sb, &store, req, &settings)?;
        if let Some(u) = &self.userspace {
            return hand_over(host, lease, u, self.field, req, &settings, mac);
        }
        let index = lease.take(host, sb, &settings)?;
        if let Some(m) = self.mtu {
            sb.nl.set_mtu(index, m).ctx(|| format!("set MTU {m} on VF {}", lease.claim().vf))?;
        }
        let routes = container::ipam_routes(req);
        let setup = Setup {
            temp_index: index,
            ifname: req.ifname,
            mac,
            addresses: req.addresses.iter().map(|a| a.address).collect(),
            routes: routes.clone(),
            neighbours: Vec::new(),
        };
        let link = container::finish(sb, &setup)?;
        let iface = Iface::of(&link, true).with_pci(Some(lease.claim().pci.clone()));
        lease.keep();
        Ok(Outcome::attached(Vec::new(), iface, &req.addresses_with_gateways(), &routes))
    }

    fn del(
        &self, host: &mut Namespace, sb: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        moved::release_owned::<VfClaim>(host, sb, req)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        if self.userspace.is_none() {
            let (_, claims) = moved::check_claimed::<VfClaim>(sb, req, self.mtu, 1, "VF")?;
            return check_pf_settings(host, &claims[0]);
        }
        let claims = moved::recorded::<VfClaim>(req, 1, "VF")?;
        let Some(handed) = &claims[0].userspace else {
            return Err(DatapathError::CheckFailed(format!(
                "VF {} of {} was moved into the container as an interface, not handed to a userspace driver",
                claims[0].vf, claims[0].pf
            )));
        };
        handed.check(&nearhost_kernel::sysfs::Sysfs::from_env(), &claims[0].pci)?;
        check_pf_settings(host, &claims[0])
    }

    fn sandbox_names(&self, ifname: &str) -> Vec<String> {
        match self.userspace {
            // Nothing is made in the container's namespace.
            Some(_) => Vec::new(),
            None => vec![ifname.to_string()],
        }
    }
}

/// ADD of a VF for a userspace driver: the VF alone in its IOMMU group, its PF
/// settings applied, handed over, the device-info file written. The result
/// names it by PCI address; addresses from IPAM are reported for the
/// application, not set (there is no interface to set them on).
fn hand_over(
    host: &mut Namespace, mut lease: VfLease, u: &userspace::Options, field: &str,
    req: &AddRequest<'_>, settings: &[VfSetting], mac: Option<Mac>,
) -> Result<Outcome> {
    let sysfs = nearhost_kernel::sysfs::Sysfs::from_env();
    let pci = lease.claim().pci.clone();
    let group = u.check_device(&sysfs, field, &pci)?;
    let info = userspace::device_info_path(req.network, req.container_id, req.ifname);
    lease.hand_over(host, settings, u, group, info)?;
    lease.keep();
    let iface = Iface {
        name: req.ifname.to_string(),
        mac: mac.as_ref().map(nearhost_kernel::link::format_mac),
        in_sandbox: true,
        mtu: None,
        pci_id: Some(pci),
    };
    let routes = container::ipam_routes(req);
    Ok(Outcome::attached(Vec::new(), iface, &req.addresses_with_gateways(), &routes))
}

/// CHECK: the PF still applies the settings the config asks for.
pub fn check_pf_settings(host: &mut Namespace, claim: &VfClaim) -> Result<()> {
    if claim.applied.is_empty() {
        return Ok(());
    }
    let pf = vf_lease::pf_link(host, "pf", &claim.pf)?;
    let states =
        host.nl.vf_states(pf.index).ctx(|| format!("read the VF settings of {}", claim.pf))?;
    let Some(now) = states.iter().find(|s| s.vf == claim.vf) else {
        return Err(DatapathError::CheckFailed(format!(
            "PF {} reports no VF {}",
            claim.pf, claim.vf
        )));
    };
    let diffs = vf_settings::differences(&claim.applied, now);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(DatapathError::CheckFailed(format!("{}: {}", claim.pf, diffs.join("; "))))
    }
}

/// The VF's MTU must not exceed its PF's: the PF carries the VF's frames.
pub fn check_mtu(mtu: Option<u32>, pf: &Link) -> Result<()> {
    match mtu {
        Some(m) if m > pf.mtu => Err(DatapathError::config(
            "mtu",
            format!("{m} exceeds the MTU {} of PF {}", pf.mtu, pf.name),
        )),
        _ => Ok(()),
    }
}
