//! macvlan: a child of the parent NIC with its own MAC, created directly inside
//! the container. Traffic to the outside never crosses a bridge or veth.

use nearhost_kernel::link::{MacvlanMode, NewLinkKind};
use serde_json::Value;

use crate::context::{AddRequest, CheckRequest, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::error::{DatapathError, Result};
use crate::fields::{self, Fields};
use crate::host;
use crate::upper::{self, UpperLink};

pub const REGISTRATION: Registration = Registration { name: "macvlan", build };

const MODES: &[(&str, MacvlanMode)] = &[
    ("bridge", MacvlanMode::Bridge),
    ("private", MacvlanMode::Private),
    ("vepa", MacvlanMode::Vepa),
    ("passthru", MacvlanMode::Passthru),
];

struct Macvlan {
    master: Option<String>,
    mode: MacvlanMode,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
    allow_default_route: bool,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    let mac = match f.str("mac")? {
        None => None,
        Some(m) => Some(fields::parse_unicast_mac("mac", m)?),
    };
    Ok(Box::new(Macvlan {
        master: f.ifname("master")?.map(str::to_string),
        mode: f.choice("mode", MODES)?.unwrap_or(MacvlanMode::Bridge),
        mtu: f.mtu("mtu")?,
        mac,
        allow_default_route: f.bool("allowDefaultRoute")?.unwrap_or(false),
    }))
}

impl Datapath for Macvlan {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        let parent = host::resolve_master(host, self.master.as_deref())?;
        host::check_mtu_fits(self.mtu, &parent)?;
        // passthru hands the NIC itself to the container (its MAC, its
        // promiscuity): on the default-route interface that would reconfigure
        // the host's own uplink.
        if self.mode == MacvlanMode::Passthru
            && !self.allow_default_route
            && host::carries_default_route(host, parent.index)?
        {
            return Err(DatapathError::config(
                "mode",
                format!("passthru on {}, the interface of the host's default route, would hand the host's uplink to the container; set \"allowDefaultRoute\": true if that is intended", parent.name),
            ));
        }
        Ok(())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let parent = host::resolve_master(host, self.master.as_deref())?;
        host::check_mtu_fits(self.mtu, &parent)?;
        let mac = req.mac.or(self.mac);
        let kind = UpperLink {
            name: "macvlan",
            parent: &parent.name,
            link: NewLinkKind::Macvlan { parent: parent.index, mode: self.mode },
            mtu: self.mtu,
            mac,
        };
        upper::add(host, sb, req, kind)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        upper::check(
            host,
            sb,
            req,
            "macvlan",
            |l| l.macvlan_mode,
            self.mode,
            self.master.as_deref(),
        )
    }
}
