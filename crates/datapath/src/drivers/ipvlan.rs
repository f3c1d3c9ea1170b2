//! ipvlan: a child of the parent NIC sharing its MAC; L2 mode switches by IP on
//! the parent, L3/L3S route there (no ARP, no broadcast). The lowest-latency
//! software datapath for containers.

use nearhost_kernel::link::{IpvlanMode, NewLinkKind};
use serde_json::Value;

use crate::container;
use crate::context::{AddRequest, CheckRequest, DelRequest, Namespace, Outcome};
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
    if f.str("mac")?.is_some() {
        return Err(DatapathError::config(
            "mac",
            "ipvlan interfaces share the master's MAC; remove \"mac\" or use macvlan",
        ));
    }
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
        &self,
        host: &mut Namespace,
        sb: &mut Namespace,
        req: &AddRequest<'_>,
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
        if link.kind.as_deref() != Some("ipvlan") {
            return Err(DatapathError::CheckFailed(format!(
                "{} is a {:?} link, not ipvlan",
                req.ifname, link.kind
            )));
        }
        if link.ipvlan_mode != Some(self.mode) {
            return Err(DatapathError::CheckFailed(format!(
                "{} is in ipvlan mode {:?}, config says {:?}",
                req.ifname, link.ipvlan_mode, self.mode
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
        assert_eq!(
            err(json!({"mac": "02:00:00:00:00:01"})),
            "mac: ipvlan interfaces share the master's MAC; remove \"mac\" or use macvlan"
        );
        assert!(err(json!({"master": "a b"})).starts_with("master: \"a b\""));
        assert!(err(json!({"mode": "l4"})).starts_with("mode: \"l4\" is not one of "));
        assert_eq!(err(json!({"mtu": 70000})), "mtu: 70000 is not a valid MTU (68..65535)");
        assert_eq!(err(json!({"master": 3})), "master: expected a string, got 3");
    }

    #[test]
    fn a_good_config_builds() {
        assert!(build(&json!({"master": "eth1", "mode": "l3", "mtu": 1400})).is_ok());
    }
}
