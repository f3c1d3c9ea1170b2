//! vxlan: containers on a per-host bridge that is their gateway (as `bridge`
//! with `isDefaultGateway`), and a VXLAN device that carries traffic for other
//! hosts' container subnets — Flannel's vxlan backend. The device has no
//! learning; remote nodes are programmed by [`crate::peers`] (agent or lab), the
//! device itself by [`crate::overlay`].

use serde_json::Value;

use crate::context::{AddRequest, CheckRequest, DelRequest, Namespace, Outcome};
use crate::driver::{Datapath, Registration};
use crate::drivers::bridge::{self, BridgeOptions};
use crate::error::{DatapathError, KernelContext, Result};
use crate::overlay::{self, VxlanOptions, OVERHEAD};

pub const REGISTRATION: Registration = Registration { name: "vxlan", build };

struct Vxlan {
    vx: VxlanOptions,
    bridge: BridgeOptions,
}

fn build(conf: &Value) -> Result<Box<dyn Datapath>> {
    let vx = VxlanOptions::parse(conf)?;
    let mut bridge = BridgeOptions::parse(conf, &format!("nhvxbr{}", vx.vni))?;
    bridge.is_gateway = true;
    bridge.is_default_gateway = true;
    Ok(Box::new(Vxlan { vx, bridge }))
}

impl Datapath for Vxlan {
    fn preflight(&self, host: &mut Namespace) -> Result<()> {
        overlay::vtep_address(host, &self.vx).map(|_| ())
    }

    fn add(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &AddRequest<'_>,
    ) -> Result<Outcome> {
        let dev = overlay::ensure_device(host, &self.vx)?;
        let mut opts = self.bridge.clone();
        let max = dev.mtu;
        match opts.mtu {
            Some(m) if m > max => {
                return Err(DatapathError::config(
                    "mtu",
                    format!(
                    "{m} exceeds {max}, the underlay's MTU less {OVERHEAD} bytes of VXLAN headers"
                ),
                ))
            }
            None => opts.mtu = Some(max),
            _ => {}
        }
        opts.forwarding = true;
        bridge::attach(host, sb, req, &opts)
    }

    fn del(
        &self, host: &mut Namespace, sb: Option<&mut Namespace>, req: &DelRequest<'_>,
    ) -> Result<()> {
        bridge::detach(host, sb, req)
    }

    fn check(
        &self, host: &mut Namespace, sb: &mut Namespace, req: &CheckRequest<'_>,
    ) -> Result<()> {
        bridge::check(host, sb, req, &self.bridge)?;
        let dev =
            host.nl.link_by_name(&self.vx.device).ctx(|| format!("look up {}", self.vx.device))?;
        match dev {
            Some(d) if d.up => Ok(()),
            Some(_) => {
                Err(DatapathError::CheckFailed(format!("VXLAN device {} is down", self.vx.device)))
            }
            None => Err(DatapathError::CheckFailed(format!(
                "VXLAN device {} is missing",
                self.vx.device
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bridge_and_device_follow_the_vni() {
        let vx = VxlanOptions::parse(&json!({"vni": 42})).unwrap();
        assert_eq!((vx.device.as_str(), vx.port), ("nhvx42", 4789));
        assert!(build(&json!({"vni": 42, "underlay": "eth1", "port": 8472})).is_ok());
    }
}
