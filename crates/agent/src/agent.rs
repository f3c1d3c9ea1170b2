//! The agent's main loop: an etcd session, the node's blocks (claimed, taken
//! back after a restart or an expired lease, released when idle), answers to
//! the plugin's requests, and the tasks that watch blocks and program routes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nearhost_ipam::agent_client::{self, Request, Response};
use tokio::sync::mpsc;

use crate::blocks;
use crate::error::{AgentError, Result};
use crate::etcd::{Etcd, EtcdOptions};
use crate::local::{self, PoolStore};
use crate::metrics::{BlockLabel, Metrics, PoolLabel, VfClaimLabel, VfCountLabel};
use crate::pools;
use crate::records::{self, BlockRecord, NodeRecord, PoolRecord};
use crate::routes::{self, Mode};
use crate::session::{self, Session};
use crate::socket::{self, Ask};
use crate::watch;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub etcd: EtcdOptions,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub data_dir: PathBuf,
    pub lease_ttl: i64,
    /// TTL of the lease the node's blocks are bound to (see [`session`]).
    pub block_lease_ttl: i64,
    pub mode: Mode,
    /// Pools to serve from the start (others are served when first asked for).
    pub pools: Vec<String>,
    pub metrics_listen: SocketAddr,
    /// How long a block must stay empty before it is given back.
    pub release_grace: Duration,
    /// Blocks kept per pool even when empty (so ADDs never wait).
    pub min_blocks: usize,
    /// Claim another block when fewer addresses than this are free.
    pub low_water: usize,
}

/// One pool as this node serves it.
struct Served {
    rec: PoolRecord,
    store: PoolStore,
    owned: Vec<BlockRecord>,
    empty_since: HashMap<IpNet, Instant>,
}

struct Agent {
    cfg: AgentConfig,
    etcd: Etcd,
    metrics: Arc<Metrics>,
    node: NodeRecord,
    served: Vec<Served>,
    /// Blocks given back locally whose etcd delete failed (retried).
    pending_release: Vec<BlockRecord>,
    /// Until when (boot clock, ms) etcd has confirmed the blocks are ours.
    held_until: u64,
    /// The last `held_until` written to every pool store at once.
    held_written: u64,
    /// Blocks another node took while containers here still use addresses in them.
    lost: Vec<LostBlock>,
}

/// A block this node held and lost (its lease expired, another node claimed
/// it) while containers here still use addresses in it: those addresses may
/// now be handed out twice. Reported until the containers are gone.
#[derive(Debug, Clone, serde::Serialize)]
struct LostBlock {
    pool: String,
    block: IpNet,
    holder: String,
    #[serde(rename = "holderIP")]
    holder_ip: IpAddr,
    addresses: Vec<IpAddr>,
}

/// The address of the interface carrying the default route.
fn default_node_ip() -> Result<IpAddr> {
    let mut nl = nearhost_kernel::Netlink::open()
        .map_err(|e| AgentError::invalid("--node-ip", e.to_string()))?;
    let link =
        nl.default_route_links().map_err(|e| AgentError::invalid("--node-ip", e.to_string()))?;
    let idx = *link.first().ok_or_else(|| {
        AgentError::invalid("--node-ip", "not given, and there is no default route to find it from")
    })?;
    let addrs =
        nl.addresses(Some(idx)).map_err(|e| AgentError::invalid("--node-ip", e.to_string()))?;
    addrs.iter().filter(|a| !a.scope_link).map(|a| a.ip).min_by_key(|ip| ip.is_ipv6()).ok_or_else(
        || {
            AgentError::invalid(
                "--node-ip",
                "not given, and the default-route interface has no address",
            )
        },
    )
}

/// The networks of the node's address (as configured on its interface, e.g.
/// the hosts' LAN), and the address itself: no other node's block may cover them.
fn node_networks(node_ip: IpAddr) -> Vec<IpNet> {
    let host = IpNet::from(node_ip);
    let on_links = nearhost_kernel::Netlink::open().and_then(|mut nl| nl.addresses(None));
    let mut nets: Vec<IpNet> = match on_links {
        Ok(addrs) => addrs
            .iter()
            .filter(|a| a.ip == node_ip)
            .filter_map(|a| IpNet::new(a.ip, a.prefix).ok().map(|n| n.trunc()))
            .collect(),
        Err(e) => {
            tracing::warn!("reading this node's addresses: {e}; protecting {node_ip} alone");
            Vec::new()
        }
    };
    nets.push(host);
    nets
}

pub fn validate(cfg: &AgentConfig) -> Result<()> {
    if !records::valid_name(&cfg.node_name) {
        return Err(AgentError::invalid(
            "--node-name",
            format!("{:?} is not a node name (letters, digits, - _ .)", cfg.node_name),
        ));
    }
    if !(2..=3600).contains(&cfg.lease_ttl) {
        return Err(AgentError::invalid(
            "--lease-ttl",
            format!("{} s is outside 2..3600", cfg.lease_ttl),
        ));
    }
    if !(cfg.lease_ttl..=7 * 86400).contains(&cfg.block_lease_ttl) {
        return Err(AgentError::invalid(
            "--block-lease-ttl",
            format!(
                "{} s is outside --lease-ttl ({} s) .. 7 days",
                cfg.block_lease_ttl, cfg.lease_ttl
            ),
        ));
    }
    if !cfg.data_dir.is_absolute() {
        return Err(AgentError::invalid(
            "--data-dir",
            format!("{} must be an absolute path", cfg.data_dir.display()),
        ));
    }
    Ok(())
}

/// Runs the agent until `shutdown` completes. Its blocks stay bound to its
/// lease, so a restart within the TTL keeps them (and the routes to them).
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    validate(&cfg)?;
    let metrics = Metrics::new();
    let etcd = Etcd::connect(&cfg.etcd, Arc::clone(&metrics)).await?;
    let node_ip = match (&cfg.mode, cfg.node_ip) {
        // Peers address this node's VTEP by the node IP (its MAC is derived
        // from it), so in VXLAN mode the two must be the same address.
        (Mode::Vxlan(o), given) => {
            let local = nearhost_datapath::Namespace::current()
                .and_then(|mut host| nearhost_datapath::overlay::vtep_address(&mut host, o))
                .map_err(|e| AgentError::invalid("--underlay", e.to_string()))?;
            match given {
                Some(ip) if ip != local => {
                    return Err(AgentError::invalid(
                        "--node-ip",
                        format!("{ip} is not the VXLAN underlay's address {local}, which peers reach this node's VTEP by; omit --node-ip or pick the --underlay that carries it"),
                    ))
                }
                _ => local,
            }
        }
        (_, Some(ip)) => ip,
        (_, None) => default_node_ip()?,
    };
    let node = NodeRecord {
        name: cfg.node_name.clone(),
        ip: node_ip,
        mode: cfg.mode.name().into(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let mut agent = Agent {
        cfg: cfg.clone(),
        etcd: etcd.clone(),
        metrics: Arc::clone(&metrics),
        node,
        served: Vec::new(),
        pending_release: Vec::new(),
        held_until: 0,
        held_written: 0,
        lost: Vec::new(),
    };
    for name in &cfg.pools {
        agent.serve_pool(name).await?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .map_err(|e| AgentError::io(format!("--metrics-listen {}", cfg.metrics_listen), e))?;
    tokio::spawn(crate::metrics::serve(listener, Arc::clone(&metrics)));
    let sock_path = agent_client::agent_socket(&cfg.data_dir);
    let (ask_tx, ask_rx) = mpsc::channel::<Ask>(256);
    tokio::spawn(socket::serve(socket::bind(&sock_path)?, ask_tx));
    let programmer = routes::spawn(cfg.mode.clone(), Arc::clone(&metrics))?;
    let (own_tx, own_rx) = mpsc::unbounded_channel();
    let protected =
        watch::Protected { me: cfg.node_name.clone(), networks: node_networks(node_ip) };
    tokio::spawn(watch::run(etcd, protected, programmer, own_tx, Arc::clone(&metrics)));
    let outcome = agent.sessions(ask_rx, own_rx, shutdown).await;
    let _ = std::fs::remove_file(&sock_path);
    outcome
}

impl Agent {
    async fn serve_pool(&mut self, name: &str) -> Result<usize> {
        if let Some(i) = self.served.iter().position(|s| s.rec.name == name) {
            return Ok(i);
        }
        let rec = pools::get(&self.etcd, name).await?;
        let store = local::open(&self.cfg.data_dir, name)?;
        self.served.push(Served { rec, store, owned: Vec::new(), empty_since: HashMap::new() });
        Ok(self.served.len() - 1)
    }

    async fn sessions(
        &mut self, mut asks: mpsc::Receiver<Ask>,
        mut own_deleted: mpsc::UnboundedReceiver<BlockRecord>, shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(250);
        loop {
            self.metrics.set_ready(false);
            let ttls =
                session::Ttls { session: self.cfg.lease_ttl, blocks: self.cfg.block_lease_ttl };
            let opened = tokio::select! {
                s = session::open(&self.etcd, &self.node, &ttls, &self.cfg.data_dir) => s,
                _ = &mut shutdown => return Ok(()),
            };
            let mut session = match opened {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("etcd session: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            self.held_until = *session.held_until.borrow();
            if let Err(e) = self.settle(&session).await {
                tracing::warn!("taking blocks back: {e}");
            }
            self.metrics.set_ready(true);
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    why = session.lost.recv() => {
                        tracing::warn!("etcd session lost ({}); opening a new one", why.unwrap_or("closed"));
                        break;
                    }
                    Ok(()) = session.held_until.changed() => {
                        self.held_until = *session.held_until.borrow_and_update();
                        self.confirm_all();
                    }
                    Some(ask) = asks.recv() => {
                        let resp = self.answer(ask.request, &session).await;
                        let _ = ask.reply.send(resp);
                    }
                    Some(rec) = own_deleted.recv() => {
                        if let Some(i) = self.served.iter().position(|s| s.owned.contains(&rec)) {
                            tracing::warn!("block {} was deleted from etcd (lease expired?); claiming it back", rec.block);
                            match self.take_back(&rec, session.blocks_lease).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    self.served[i].owned.retain(|b| b != &rec);
                                    if let Err(e) = self.write_local(i) {
                                        tracing::error!("{e}");
                                    }
                                }
                                Err(e) => tracing::error!("{e}"),
                            }
                        }
                    }
                    _ = tick.tick() => self.housekeeping().await,
                    _ = &mut shutdown => return Ok(()),
                }
            }
        }
    }

    /// After a new session: take back every block we hold (or held before a
    /// restart, as recorded locally), then make sure each pool has its minimum.
    async fn settle(&mut self, session: &Session) -> Result<()> {
        for i in 0..self.served.len() {
            let recorded = local::recorded_blocks(&self.served[i].store)?;
            let mut wanted: Vec<BlockRecord> = self.served[i].owned.clone();
            for b in recorded {
                if !wanted.iter().any(|w| w.block == b) {
                    wanted.push(self.block_rec(i, b));
                }
            }
            self.served[i].owned.clear();
            for rec in wanted {
                if self.take_back(&rec, session.blocks_lease).await? {
                    self.served[i].owned.push(rec);
                }
            }
            // What we hold now, before a claim can fail: a block taken by
            // another node must be gone from the plugin's list at once.
            self.write_local(i)?;
            while self.served[i].owned.len() < self.cfg.min_blocks {
                self.claim(i, session.blocks_lease).await?;
            }
        }
        self.housekeeping().await;
        Ok(())
    }

    fn block_rec(&self, i: usize, block: IpNet) -> BlockRecord {
        BlockRecord {
            pool: self.served[i].rec.name.clone(),
            block,
            node: self.node.name.clone(),
            node_ip: self.node.ip,
        }
    }

    /// Re-binds a block of ours to `lease`; false when another node holds it
    /// now (then it is reported with the addresses still in use in it).
    async fn take_back(&mut self, rec: &BlockRecord, lease: i64) -> Result<bool> {
        if blocks::rebind(&self.etcd, rec, lease).await? {
            self.lost.retain(|l| !(l.pool == rec.pool && l.block == rec.block));
            return Ok(true);
        }
        let Some(h) = blocks::holder(&self.etcd, &rec.pool, &rec.block).await? else {
            return Ok(false);
        };
        let err = AgentError::BlockStolen {
            pool: rec.pool.clone(),
            block: rec.block,
            holder: h.node.clone(),
            holder_ip: h.node_ip,
        };
        let addresses = self
            .served
            .iter()
            .find(|s| s.rec.name == rec.pool)
            .map(|s| local::reserved_addresses(&s.store, &rec.block))
            .transpose()?
            .unwrap_or_default();
        if addresses.is_empty() {
            tracing::warn!("{err} (none are in use)");
            return Ok(false);
        }
        let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        tracing::error!("{err}: {}", list.join(", "));
        self.lost.retain(|l| !(l.pool == rec.pool && l.block == rec.block));
        self.lost.push(LostBlock {
            pool: rec.pool.clone(),
            block: rec.block,
            holder: h.node,
            holder_ip: h.node_ip,
            addresses,
        });
        Ok(false)
    }

    async fn claim(&mut self, i: usize, lease: i64) -> Result<BlockRecord> {
        let rec =
            blocks::claim(&self.etcd, &self.served[i].rec, &self.node.name, self.node.ip, lease)
                .await?;
        self.served[i].owned.push(rec.clone());
        self.write_local(i)?;
        tracing::info!("claimed block {} of pool {}", rec.block, rec.pool);
        Ok(rec)
    }

    fn write_local(&self, i: usize) -> Result<()> {
        let s = &self.served[i];
        let blocks: Vec<IpNet> = s.owned.iter().map(|b| b.block).collect();
        local::set_blocks(&s.store, &blocks, self.held_until)
    }

    /// A keep-alive proved the blocks ours for longer: tell the plugin. Once a
    /// quarter of the blocks lease has gone by, not on every keep-alive (each
    /// write takes the plugin's lock and fsyncs).
    fn confirm_all(&mut self) {
        let now = nearhost_ipam::boot_clock_ms();
        let quarter = self.cfg.block_lease_ttl as u64 * 1000 / 4;
        if self.held_written > now + 3 * quarter {
            return;
        }
        self.held_written = self.held_until;
        for i in 0..self.served.len() {
            if let Err(e) = self.write_local(i) {
                tracing::warn!("recording pool {}'s blocks: {e}", self.served[i].rec.name);
            }
        }
    }

    async fn answer(&mut self, req: Request, session: &Session) -> Response {
        let fail = |e: AgentError| {
            let code = match e {
                // a pool that does not exist, or whose record is not a pool's
                AgentError::UnknownPool(_) | AgentError::Invalid { .. } => Some(7),
                AgentError::PoolExhausted { .. } => Some(100),
                _ => None,
            };
            Response { ok: false, error: Some(e.to_string()), code, body: None }
        };
        match req {
            Request::Status => {
                Response { ok: true, error: None, code: None, body: Some(self.status()) }
            }
            Request::Claim { pool, if_low } => {
                let i = match self.serve_pool(&pool).await {
                    Ok(i) => i,
                    Err(e) => return fail(e),
                };
                // The store may have lost our blocks (`nearhost ipam repair`
                // rebuilt it): record them again before judging what is free.
                let mut owned: Vec<IpNet> = self.served[i].owned.iter().map(|b| b.block).collect();
                owned.sort();
                if local::recorded_blocks(&self.served[i].store).ok() != Some(owned) {
                    if let Err(e) = self.write_local(i) {
                        return fail(e);
                    }
                }
                let free = local::usage(&self.served[i].store).map(|(_, f)| f).unwrap_or(0);
                let needed = if if_low { free < self.cfg.low_water } else { free == 0 };
                if !needed {
                    return Response { ok: true, error: None, code: None, body: None };
                }
                match self.claim(i, session.blocks_lease).await {
                    Ok(rec) => Response {
                        ok: true,
                        error: None,
                        code: None,
                        body: Some(serde_json::json!({"block": rec.block})),
                    },
                    Err(e) => fail(e),
                }
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let pools: Vec<serde_json::Value> = self
            .served
            .iter()
            .map(|s| {
                let free = local::usage(&s.store).map(|(_, f)| f).unwrap_or(0);
                serde_json::json!({"pool": s.rec.name, "subnet": s.rec.subnet, "blocks": s.owned.iter().map(|b| b.block).collect::<Vec<_>>(), "free": free})
            })
            .collect();
        let held_for = self.held_until.saturating_sub(nearhost_ipam::boot_clock_ms()) / 1000;
        serde_json::json!({"node": self.node.name, "nodeIP": self.node.ip, "mode": self.node.mode, "ready": self.metrics.ready.load(std::sync::atomic::Ordering::Relaxed), "blocksHeldForSeconds": held_for, "pools": pools, "lostBlocks": self.lost})
    }

    /// Metrics, and giving back blocks idle for the grace period (keeping the
    /// per-pool minimum).
    async fn housekeeping(&mut self) {
        self.vf_inventory();
        self.recount_lost();
        for rec in std::mem::take(&mut self.pending_release) {
            if blocks::release(&self.etcd, &rec).await.is_err() {
                self.pending_release.push(rec);
            }
        }
        for i in 0..self.served.len() {
            let Ok((per_block, free)) = local::usage(&self.served[i].store) else { continue };
            let label = PoolLabel { pool: self.served[i].rec.name.clone() };
            self.metrics
                .addresses_in_use
                .get_or_create(&label)
                .set(per_block.iter().map(|(_, n)| *n as i64).sum());
            let now = Instant::now();
            for (block, used) in &per_block {
                if *used > 0 {
                    self.served[i].empty_since.remove(block);
                } else {
                    self.served[i].empty_since.entry(*block).or_insert(now);
                }
            }
            let idle: Vec<IpNet> = self.served[i]
                .empty_since
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= self.cfg.release_grace)
                .map(|(b, _)| *b)
                .collect();
            let mut free = free;
            for block in idle {
                // Keep the per-pool minimum, and the headroom that made us claim
                // the block in the first place (else: claim, release, claim …).
                let capacity = local::capacity(&block);
                if self.served[i].owned.len() <= self.cfg.min_blocks
                    || free.saturating_sub(capacity) < self.cfg.low_water
                {
                    break;
                }
                free -= capacity;
                if let Err(e) = self.release(i, block).await {
                    tracing::warn!("releasing block {block}: {e}");
                }
            }
            self.metrics.blocks_owned.get_or_create(&label).set(self.served[i].owned.len() as i64);
        }
    }

    /// Lost blocks: their addresses still in use (a block is forgotten once
    /// its containers are gone), as a metric per block.
    fn recount_lost(&mut self) {
        for l in &mut self.lost {
            if let Some(s) = self.served.iter().find(|s| s.rec.name == l.pool) {
                if let Ok(a) = local::reserved_addresses(&s.store, &l.block) {
                    l.addresses = a;
                }
            }
        }
        self.lost.retain(|l| !l.addresses.is_empty());
        self.metrics.lost_block_addresses.clear();
        for l in &self.lost {
            let label = BlockLabel { pool: l.pool.clone(), block: l.block.to_string() };
            self.metrics.lost_block_addresses.get_or_create(&label).set(l.addresses.len() as i64);
        }
    }

    /// The SR-IOV VF inventory per PF (from sysfs, and the claims the sriov
    /// datapaths keep node-wide, in nearhost_datapath::claims_dir()).
    fn vf_inventory(&self) {
        let sysfs = nearhost_kernel::sysfs::Sysfs::from_env();
        let claims = nearhost_datapath::claims_dir();
        let inventory = match nearhost_datapath::vf_inventory(&sysfs, &claims) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!("VF inventory: {e}");
                return;
            }
        };
        self.metrics.vfs.clear();
        self.metrics.vf_claims.clear();
        for pf in inventory {
            let count = |state: &str, n: u32| {
                self.metrics
                    .vfs
                    .get_or_create(&VfCountLabel { pf: pf.pf.clone(), state: state.into() })
                    .set(i64::from(n));
            };
            count("total", pf.total);
            count("enabled", pf.enabled);
            count("free", pf.free);
            count("claimed", pf.claimed.len() as u32);
            for c in &pf.claimed {
                let label = VfClaimLabel {
                    pf: pf.pf.clone(),
                    vf: c.vf.to_string(),
                    pci: c.pci.clone(),
                    container: c.container_id.clone(),
                    ifname: c.ifname.clone(),
                };
                self.metrics.vf_claims.get_or_create(&label).set(1);
            }
        }
    }

    async fn release(&mut self, i: usize, block: IpNet) -> Result<()> {
        if !local::drop_if_empty(&self.served[i].store, &block)? {
            self.served[i].empty_since.remove(&block);
            return Ok(());
        }
        let rec = self.block_rec(i, block);
        self.served[i].owned.retain(|b| b.block != block);
        self.served[i].empty_since.remove(&block);
        if let Err(e) = blocks::release(&self.etcd, &rec).await {
            self.pending_release.push(rec);
            return Err(e);
        }
        tracing::info!("released idle block {block} of pool {}", rec.pool);
        Ok(())
    }
}
