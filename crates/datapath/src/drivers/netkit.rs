//! netkit: a netkit pair per container (Linux ≥ 6.7) in L3 mode, the peer in
//! the container and the primary on the host. Addressed and routed as
//! `routed` is — a /32 (/128) per container on the host, host-gw routes
//! between hosts — but with no Ethernet header and no neighbours: the
//! container's routes go straight out of its device, and the kernel hands a
//! packet from one side to the other without veth's per-CPU backlog queue
//! (the namespace crossing costs what a call costs).

use serde_json::Value;

use crate::context::{AddRequest, CheckRequest, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::drivers::routed::{attach_pair, check_pair};
use crate::error::{DatapathError, Result};
use crate::fields::Fields;
use crate::veth::{self, PairKind};

pub const REGISTRATION: Registration = Registration { name: "netkit", build };

struct Netkit {
    mtu: Option<u32>,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let f = Fields::new(conf)?;
    f.refuse("mac", "netkit devices in L3 mode have no MAC (leave it out, or use routed)")?;
    Ok(Box::new(Netkit { mtu: f.mtu("mtu")? }))
}

impl Datapath for Netkit {
    fn preflight(&self, _host: &mut Namespace) -> Result<()> {
        Ok(())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        if req.mac.is_some() {
            return Err(DatapathError::config(
                "mac",
                "netkit devices in L3 mode have no MAC (CNI_ARGS MAC= or the mac capability)",
            ));
        }
        let pair = veth::create_pair(host, sb, PairKind::Netkit, "nhk", self.mtu, None)?;
        let routed = attach_pair(host, sb, req, &pair)?;
        pair.guard.disarm();
        Ok(routed.outcome(&pair.host))
    }

    // DEL is the usual one: deleting the container end deletes the primary,
    // and with it the host routes through it.

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        check_pair(host, sb, req).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::driver::build;
    use crate::error::DatapathError;

    #[test]
    fn a_mac_is_refused_by_name() {
        let conf = json!({"datapath": "netkit", "mac": "02:00:00:00:00:01"});
        match build(&conf) {
            Err(DatapathError::InvalidConfig { field, reason }) => {
                assert_eq!(field, "mac");
                assert!(reason.contains("no MAC"), "{reason}");
            }
            Err(e) => panic!("expected a config error naming mac, got {e}"),
            Ok(_) => panic!("expected a config error naming mac, got a driver"),
        }
        assert!(build(&json!({"datapath": "netkit", "mtu": 1400})).is_ok());
    }
}
