//! Where an attachment's addresses come from: the embedded IPAM, a delegated IPAM
//! plugin, a previous plugin's result (chaining), or nowhere (no `ipam`).

use std::net::IpAddr;

use nearhost_datapath::{Assigned, Outcome, RouteSpec};
use std::time::Duration;

use nearhost_ipam::{agent_client, FileStore, Ipam, IpamConfig, IpamError, Lease, Owner};
use serde_json::Value;

use crate::delegate;
use crate::env::{Command, Invocation};
use crate::error::{code, CniError, Result};
use crate::netconf::NetConf;
use crate::result;

pub enum Addressing {
    None,
    Embedded {
        ipam: Ipam<FileStore>,
        cfg: IpamConfig,
    },
    /// A cluster pool: addresses from the blocks the node agent holds.
    Pool {
        ipam: Ipam<FileStore>,
        cfg: IpamConfig,
        pool: String,
    },
    Delegated {
        plugin: String,
    },
    Chained {
        prev: Outcome,
    },
}

/// How long an ADD waits for the agent to claim a block when the node's blocks
/// are full (the only time an ADD waits on the agent, and so on etcd).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// A hint to the agent that blocks run low: answered at once, never waited on.
const NUDGE_TIMEOUT: Duration = Duration::from_millis(200);

/// Allocates from the node's blocks. Full (or none yet): ask the agent for a
/// block and try once more; an unreachable agent or etcd is "try again later"
/// (code 11) — never an address outside the node's own blocks.
fn allocate_from_pool(
    ipam: &Ipam<FileStore>, cfg: &IpamConfig, pool: &str, owner: &Owner, requested: &[IpAddr],
) -> Result<Vec<Lease>> {
    match ipam.allocate_in_blocks(&cfg.exclude, owner, requested) {
        Ok(leases) => {
            let claim = agent_client::Request::Claim { pool: pool.to_string(), if_low: true };
            if let Err(e) = agent_client::ask_agent(&cfg.data_dir, &claim, NUDGE_TIMEOUT) {
                tracing::warn!("could not tell the agent that pool {pool} runs low: {e}");
            }
            Ok(leases)
        }
        Err(IpamError::Exhausted { .. }) | Err(IpamError::Unavailable(_))
            if requested.is_empty() =>
        {
            let claim = agent_client::Request::Claim { pool: pool.to_string(), if_low: false };
            let answer = agent_client::ask_agent(&cfg.data_dir, &claim, CLAIM_TIMEOUT).map_err(|e| {
                CniError::new(code::TRY_AGAIN_LATER, format!("pool {pool}: this node's address blocks are full and no new block could be claimed: {e}"))
            })?;
            if !answer.ok {
                let why = answer.error.unwrap_or_default();
                return Err(match answer.code {
                    Some(c) => CniError::new(c, format!("ipam.pool: {why}")),
                    None => CniError::new(code::TRY_AGAIN_LATER, format!("pool {pool}: this node's blocks are full and the agent could not claim another: {why}")),
                });
            }
            Ok(ipam.allocate_in_blocks(&cfg.exclude, owner, requested)?)
        }
        Err(IpamError::Unconfirmed(m)) => {
            Err(CniError::new(code::TRY_AGAIN_LATER, format!("pool {pool}: {m}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Addresses and routes for the datapath.
#[derive(Default)]
pub struct Assignment {
    pub addresses: Vec<Assigned>,
    pub routes: Vec<RouteSpec>,
    pub dns: Option<Value>,
}

/// Undoes a reservation on drop unless disarmed (ADD failed after reserving).
pub struct ReleaseGuard<'a> {
    undo: Option<Box<dyn FnOnce() + 'a>>,
}

impl ReleaseGuard<'_> {
    pub fn disarm(mut self) {
        self.undo = None;
    }
}

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            undo();
        }
    }
}

impl Addressing {
    pub fn from_conf(conf: &NetConf) -> Result<Self> {
        match (conf.ipam_type(), &conf.ipam) {
            (Some("nearhost"), Some(raw)) => {
                let cfg = IpamConfig::parse(raw)?;
                if let Some(pool) = cfg.pool.clone() {
                    let store = FileStore::new(&cfg.data_dir, &agent_client::store_name(&pool))?;
                    return Ok(Addressing::Pool { ipam: Ipam::new(store), cfg, pool });
                }
                let store = FileStore::new(&cfg.data_dir, &conf.name)?;
                Ok(Addressing::Embedded { ipam: Ipam::new(store), cfg })
            }
            (Some(other), _) => Ok(Addressing::Delegated { plugin: other.to_string() }),
            (None, _) => match &conf.prev_result {
                Some(prev) => {
                    Ok(Addressing::Chained { prev: result::decode("prevResult", prev)?.0 })
                }
                None => Ok(Addressing::None),
            },
        }
    }

    /// Reserves addresses for `owner`; the guard gives them back unless disarmed.
    pub fn reserve<'a>(
        &'a self, inv: &'a Invocation, stdin: &'a [u8], owner: &'a Owner, requested: &[IpAddr],
    ) -> Result<(Assignment, ReleaseGuard<'a>)> {
        match self {
            Addressing::None => Ok((Assignment::default(), ReleaseGuard { undo: None })),
            Addressing::Chained { prev } => {
                let addresses = prev
                    .ips
                    .iter()
                    .map(|ip| Assigned { address: ip.address, gateway: ip.gateway })
                    .collect();
                let routes = prev.routes.clone();
                Ok((Assignment { addresses, routes, dns: None }, ReleaseGuard { undo: None }))
            }
            Addressing::Embedded { ipam, cfg } | Addressing::Pool { ipam, cfg, .. } => {
                let leases = match self {
                    Addressing::Pool { pool, .. } => {
                        allocate_from_pool(ipam, cfg, pool, owner, requested)?
                    }
                    _ => ipam.allocate(&cfg.range_sets, &cfg.exclude, owner, requested)?,
                };
                let addresses = leases
                    .iter()
                    .map(|l| Assigned {
                        address: ipnet::IpNet::new(l.ip, l.prefix()).expect("valid prefix"),
                        gateway: l.gateway,
                    })
                    .collect();
                let routes = cfg.routes.clone();
                let guard = ReleaseGuard {
                    undo: Some(Box::new(move || {
                        if let Err(e) = ipam.rollback(owner, &leases) {
                            tracing::error!("rollback: releasing addresses of {owner} failed: {e}");
                        }
                    })),
                };
                Ok((Assignment { addresses, routes, dns: None }, guard))
            }
            Addressing::Delegated { plugin } => {
                let out = delegate::exec(inv, plugin, Command::Add, stdin)?.ok_or_else(|| {
                    CniError::new(
                        crate::error::code::DELEGATE_FAILED,
                        format!("ipam plugin {plugin} returned no result"),
                    )
                })?;
                let (o, dns) = result::decode("ipam result", &out)?;
                let addresses = o
                    .ips
                    .iter()
                    .map(|ip| Assigned { address: ip.address, gateway: ip.gateway })
                    .collect();
                let routes = o.routes.clone();
                let guard = ReleaseGuard {
                    undo: Some(Box::new(move || {
                        if let Err(e) = delegate::exec(inv, plugin, Command::Del, stdin) {
                            tracing::error!("rollback: ipam plugin {plugin} DEL failed: {e}");
                        }
                    })),
                };
                Ok((Assignment { addresses, routes, dns }, guard))
            }
        }
    }

    /// Releases `owner`'s addresses (idempotent).
    pub fn release(&self, inv: &Invocation, stdin: &[u8], owner: &Owner) -> Result<()> {
        match self {
            Addressing::None | Addressing::Chained { .. } => Ok(()),
            Addressing::Embedded { ipam, .. } | Addressing::Pool { ipam, .. } => {
                ipam.release(owner).map(|_| ()).map_err(Into::into)
            }
            Addressing::Delegated { plugin } => {
                delegate::exec(inv, plugin, Command::Del, stdin).map(|_| ())
            }
        }
    }

    /// CHECK: the addresses in `prev` are still reserved for `owner`.
    pub fn check(
        &self, inv: &Invocation, stdin: &[u8], owner: &Owner, prev: &Outcome,
    ) -> Result<()> {
        match self {
            Addressing::None | Addressing::Chained { .. } => Ok(()),
            Addressing::Delegated { plugin } => {
                delegate::exec(inv, plugin, Command::Check, stdin).map(|_| ())
            }
            Addressing::Embedded { ipam, .. } | Addressing::Pool { ipam, .. } => {
                let held = ipam.leases_of(owner)?;
                let missing: Vec<String> = prev
                    .ips
                    .iter()
                    .filter(|ip| !held.contains(&ip.address.addr()))
                    .map(|ip| ip.address.addr().to_string())
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(CniError::new(
                        crate::error::code::CHECK_MISMATCH,
                        format!("IPAM holds no reservation of {} for {owner}", missing.join(", ")),
                    ))
                }
            }
        }
    }

    /// GC of `network`: drops the network's embedded reservations whose
    /// attachment is not in `valid`. Reservations of other networks drawing
    /// from the same pool, and those `nearhost attach` made (its `gc` releases
    /// them), are not the caller's to judge and are kept.
    pub fn gc(&self, network: &str, valid: &[(String, String)]) -> Result<Vec<(IpAddr, Owner)>> {
        let listed = |o: &Owner| valid.iter().any(|(c, i)| *c == o.container_id && *i == o.ifname);
        match self {
            // The store is this network's alone: unrecorded networks are this one.
            Addressing::Embedded { ipam, .. } => Ok(ipam.gc(|o| {
                o.attach || !(o.network.is_empty() || o.network == network) || listed(o)
            })?),
            // Shared by every network on the pool: only what is surely this network's.
            Addressing::Pool { ipam, .. } => {
                Ok(ipam.gc(|o| o.attach || o.network != network || listed(o))?)
            }
            _ => Ok(Vec::new()),
        }
    }
}
