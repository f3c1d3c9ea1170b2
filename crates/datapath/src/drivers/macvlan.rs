//! macvlan: a child of the parent NIC with its own MAC, created directly inside
//! the container. Traffic to the outside never crosses a bridge or veth.

use nearhost_kernel::link::{MacvlanMode, NewLinkKind};
use serde_json::Value;

use crate::container;
use crate::context::{AddRequest, CheckRequest, DelRequest, Namespace, Outcome};
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
        &self,
        host: &mut Namespace,
        sb: &mut Namespace,
        req: &AddRequest<'_>,
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

    fn del(
        &self,
        _host: &mut Namespace,
        sb: Option<&mut Namespace>,
        req: &DelRequest<'_>,
    ) -> Result<()> {
        container::delete_if_present(sb, req.ifname)
    }

    fn check(
        &self,
        host: &mut Namespace,
        sb: &mut Namespace,
        req: &CheckRequest<'_>,
    ) -> Result<()> {
        let link = container::check_sandbox(sb, req)?;
        if link.kind.as_deref() != Some("macvlan") {
            return Err(DatapathError::CheckFailed(format!(
                "{} is a {:?} link, not macvlan",
                req.ifname, link.kind
            )));
        }
        if link.macvlan_mode != Some(self.mode) {
            return Err(DatapathError::CheckFailed(format!(
                "{} is in macvlan mode {:?}, config says {:?}",
                req.ifname, link.macvlan_mode, self.mode
            )));
        }
        upper::check_parent(host, &link, self.master.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        crate::driver::config_error(build, v)
    }

    #[test]
    fn config_errors_name_the_field_and_value() {
        assert!(err(json!({"master": "a/b"})).starts_with("master: \"a/b\""));
        assert!(err(json!({"master": "x".repeat(16)})).starts_with("master: "));
        assert_eq!(
            err(json!({"mode": "bridged"})),
            "mode: \"bridged\" is not one of bridge, private, vepa, passthru"
        );
        assert_eq!(err(json!({"mtu": 20})), "mtu: 20 is not a valid MTU (68..65535)");
        assert_eq!(
            err(json!({"mtu": "1500"})),
            "mtu: expected a non-negative integer, got \"1500\""
        );
        assert_eq!(
            err(json!({"mac": "01:00:00:00:00:01"})),
            "mac: 01:00:00:00:00:01 is a multicast MAC address"
        );
        assert!(err(json!({"mac": "zz"})).starts_with("mac: \"zz\" is not a MAC address"));
        assert_eq!(
            err(json!({"allowDefaultRoute": 1})),
            "allowDefaultRoute: expected true or false, got 1"
        );
    }

    #[test]
    fn a_good_config_builds() {
        let conf = json!({"master": "eth1", "mode": "passthru", "mtu": 9000, "mac": "02:00:00:00:00:01", "allowDefaultRoute": true});
        assert!(build(&conf).is_ok());
        assert!(build(&json!({})).is_ok(), "every field has a default");
    }
}
