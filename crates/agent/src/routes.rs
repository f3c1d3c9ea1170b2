//! Programming the kernel for other nodes' blocks, on a thread of its own (the
//! netlink layer is synchronous): host-gw routes, or VXLAN FDB, neighbour and
//! route entries. It reconciles the desired peers with what it programmed —
//! touching only the peers that changed, so a claim costs each host a few
//! netlink requests however many nodes there are — and re-applies everything
//! every 15 s, so a route removed by hand comes back.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use nearhost_datapath::overlay::{self, VxlanOptions};
use nearhost_datapath::peers::{self, Peer};
use nearhost_datapath::Namespace;

use crate::metrics::Metrics;

/// Remote node address → its blocks.
pub type Desired = BTreeMap<IpAddr, Vec<IpNet>>;

#[derive(Debug, Clone)]
pub enum Mode {
    Routed,
    Vxlan(VxlanOptions),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Routed => "routed",
            Mode::Vxlan(_) => "vxlan",
        }
    }
}

const RESYNC: Duration = Duration::from_secs(15);

/// Starts the programming thread; it gets each new desired state.
pub fn spawn(mode: Mode, metrics: Arc<Metrics>) -> crate::error::Result<Sender<Desired>> {
    let (tx, rx) = channel::<Desired>();
    let mut host = Namespace::current()?;
    let vxlan_index = match &mode {
        Mode::Vxlan(o) => Some(overlay::ensure_device(&mut host, o)?.index),
        Mode::Routed => None,
    };
    std::thread::Builder::new()
        .name("nearhost-routes".into())
        .spawn(move || {
            let mut programmed = Desired::new();
            let mut desired = Desired::new();
            loop {
                let full = match rx.recv_timeout(RESYNC) {
                    Ok(d) => {
                        desired = d;
                        false
                    }
                    Err(RecvTimeoutError::Timeout) => true,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                programmed = reconcile(&mut host, vxlan_index, &programmed, &desired, full);
                metrics.routes_programmed.set(programmed.values().map(|s| s.len() as i64).sum());
                metrics.peers.set(programmed.len() as i64);
            }
        })
        .map_err(|e| crate::error::AgentError::io("start the route programming thread", e))?;
    Ok(tx)
}

fn apply(
    host: &mut Namespace, vx: Option<u32>, peer: &Peer, add: bool,
) -> nearhost_datapath::Result<()> {
    match (vx, add) {
        (None, true) => peers::add_hostgw(host, peer),
        (None, false) => peers::remove_hostgw(host, peer),
        (Some(i), true) => peers::add_vxlan(host, i, peer),
        (Some(i), false) => peers::remove_vxlan(host, i, peer),
    }
}

/// Removes what is no longer desired, applies what changed (everything when
/// `full`); returns what is now programmed (failed entries are left out and
/// retried next time).
fn reconcile(
    host: &mut Namespace, vx: Option<u32>, programmed: &Desired, desired: &Desired, full: bool,
) -> Desired {
    for (node, old) in programmed.iter().filter(|(n, old)| desired.get(*n) != Some(*old)) {
        let keep = desired.get(node).cloned().unwrap_or_default();
        let result = if keep.is_empty() {
            // The node left: its routes go, and in VXLAN mode its FDB and neighbour entries.
            apply(host, vx, &Peer { node_ip: *node, subnets: old.clone() }, false)
        } else {
            // Some of its blocks went: just those routes (deleting by destination
            // and gateway matches both the host-gw and the VXLAN form).
            let gone: Vec<IpNet> = old.iter().filter(|s| !keep.contains(s)).copied().collect();
            peers::remove_hostgw(host, &Peer { node_ip: *node, subnets: gone })
        };
        if let Err(e) = result {
            tracing::warn!("removing routes to {node}: {e}");
        }
    }
    let mut now = Desired::new();
    for (node, subnets) in desired {
        if !full && programmed.get(node) == Some(subnets) {
            now.insert(*node, subnets.clone());
            continue;
        }
        let peer = Peer { node_ip: *node, subnets: subnets.clone() };
        match apply(host, vx, &peer, true) {
            Ok(()) => {
                now.insert(*node, subnets.clone());
            }
            Err(e) => tracing::warn!("programming routes to {node}: {e}"),
        }
    }
    now
}
