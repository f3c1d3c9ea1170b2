//! ipvlan: a child of the parent NIC sharing its MAC; L2 mode switches by IP on
//! the parent, L3/L3S route there (no ARP, no broadcast). The lowest-latency
//! software datapath for containers.

use nearhost_kernel::link::{IpvlanMode, NewLinkKind};
use serde_json::Value;

use crate::context::{AddRequest, CheckRequest, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, Result};
use crate::fields::Fields;
use crate::host;
use crate::upper::{self, UpperLink};

pub const REGISTRATION: Registration = Registration { name: "ipvlan", build };

const MODES: &[(&str, IpvlanMode)] =
    &[("l2", IpvlanMode::L2), ("l3", IpvlanMode::L3), ("l3s", IpvlanMode::L3s)];

struct Ipvlan {
    master: Option<String>,
    mode: IpvlanMode,
    mtu: Option<u32>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    f.refuse("mac", "ipvlan interfaces share the master's MAC; remove \"mac\" or use macvlan")?;
    Ok(Box::new(Ipvlan {
        master: f.ifname("master")?.map(str::to_string),
        mode: f.choice("mode", MODES)?.unwrap_or(IpvlanMode::L2),
        mtu: f.mtu("mtu")?,
    }))
}

impl Datapath for Ipvlan {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        let parent = host::resolve_master(host, self.master.as_deref())?;
        host::check_mtu_fits(self.mtu, &parent)
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        if req.mac.is_some() {
            return Err(DatapathError::config("mac", "a MAC was requested (CNI_ARGS MAC= or the mac capability) but ipvlan shares the master's MAC"));
        }
        let parent = host::resolve_master(host, self.master.as_deref())?;
        host::check_mtu_fits(self.mtu, &parent)?;
        let kind = UpperLink {
            name: "ipvlan",
            parent: &parent.name,
            link: NewLinkKind::Ipvlan { parent: parent.index, mode: self.mode },
            mtu: self.mtu,
            mac: None,
        };
        upper::add(host, sb, req, kind)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        upper::check(host, sb, req, "ipvlan", |l| l.ipvlan_mode, self.mode, self.master.as_deref())
    }
}
