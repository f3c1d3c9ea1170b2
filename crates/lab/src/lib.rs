//! nearhost lab and demo: a multi-host lab of network namespaces on one
//! machine, with one container per datapath on every host attached by the CNI
//! plugin's own code, and the demo that measures each datapath against the host.

pub mod demo;
pub mod error;
pub mod exec;
pub mod measure;
pub mod nginx;
pub mod plan;
pub mod progress;
pub mod report;
pub mod signals;
pub mod state;
pub mod topology;
pub mod workload;

pub use error::{LabError, Result};
pub use plan::Dp;
pub use state::LabState;

/// `nearhost lab up`: builds the lab for `dps` and starts a bench server in
/// every server namespace; on failure, nothing of it stays.
pub fn up(dps: &[Dp]) -> Result<LabState> {
    let mut state = LabState::claim("lab up")?;
    let built = topology::up(&mut state, dps).and_then(|_| {
        let server_cpu = None;
        for d in state.datapaths.clone().iter().filter(|d| d.available) {
            let server = measure::start_server(&d.server_ns, plan::SERVER_PORT, server_cpu)?;
            state.servers.push(server);
        }
        state.save()
    });
    if let Err(e) = built {
        let _ = topology::down(Some(&state));
        return Err(e);
    }
    Ok(state)
}

/// `nearhost lab down`: removes every lab namespace and process. Idempotent.
pub fn down() -> Result<Vec<String>> {
    let state = LabState::load().ok().flatten();
    topology::down(state.as_ref())
}

/// A lab namespace and whether it exists.
pub type NamespacePresence = (String, bool);

/// `nearhost lab status`: the lab's state and which of its namespaces exist.
pub fn status() -> Result<Option<(LabState, Vec<NamespacePresence>)>> {
    let Some(state) = LabState::load()? else { return Ok(None) };
    let present =
        nearhost_kernel::netns::list_named().map_err(error::LabError::kernel("list namespaces"))?;
    let ns = state.namespaces.iter().map(|n| (n.clone(), present.contains(n))).collect();
    Ok(Some((state, ns)))
}
