//! `nearhost agent` and `nearhost pool`: flags in, the agent crate does the
//! work (on a tokio runtime made only for these commands; the CNI path has none).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use nearhost_agent::{pools, AgentConfig, Etcd, EtcdOptions, Mode};
use nearhost_datapath::overlay::VxlanOptions;

#[derive(Args, Clone)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (http:// or https://).
    #[arg(long, value_delimiter = ',', env = "NEARHOST_ETCD")]
    etcd: Vec<String>,
    /// CA certificate (PEM) to verify etcd's TLS certificate.
    #[arg(long, env = "NEARHOST_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's TLS client authentication.
    #[arg(long, env = "NEARHOST_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, env = "NEARHOST_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// User for etcd's authentication.
    #[arg(long, env = "NEARHOST_ETCD_USER")]
    etcd_user: Option<String>,
    /// Password for --etcd-user (prefer the environment variable).
    #[arg(long, env = "NEARHOST_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
    /// Seconds to wait for etcd when connecting.
    #[arg(long, default_value_t = 5)]
    etcd_timeout: u64,
}

impl EtcdArgs {
    fn options(&self) -> EtcdOptions {
        EtcdOptions {
            endpoints: self.etcd.clone(),
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password: self.etcd_password.clone(),
            connect_timeout: Duration::from_secs(self.etcd_timeout.max(1)),
        }
    }
}

#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// This node's name in the cluster (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The address other nodes reach this one at (default: the default-route interface's).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The host's nearhost state: the same directory as the CNI config's ipam.dataDir.
    #[arg(long, default_value = "/var/lib/nearhost")]
    data_dir: PathBuf,
    /// Seconds the node's registration (and other nodes' routes to it) outlives the agent.
    #[arg(long, default_value_t = 30)]
    lease_ttl: i64,
    /// Seconds the node's address blocks outlive the agent (or its link to etcd):
    /// a restart or an etcd outage shorter than this keeps every block.
    #[arg(long, default_value_t = 3600)]
    block_lease_ttl: i64,
    /// How other nodes' blocks are reached: host-gw routes, or a VXLAN overlay.
    #[arg(long, value_parser = ["routed", "vxlan"], default_value = "routed")]
    mode: String,
    /// VXLAN network identifier (vxlan mode; must match the CNI config's "vni").
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// VXLAN underlay interface (default: the default-route interface).
    #[arg(long)]
    underlay: Option<String>,
    /// Pools to claim a block of at start (others: when a container first asks).
    #[arg(long = "pool", env = "NEARHOST_POOLS", value_delimiter = ',')]
    pools: Vec<String>,
    /// Prometheus metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Seconds a block must be empty before it goes back to the pool.
    #[arg(long, default_value_t = 60)]
    release_grace: u64,
    /// Blocks kept per pool even when empty.
    #[arg(long, default_value_t = 1)]
    min_blocks: usize,
    /// Claim another block when fewer addresses than this are free.
    #[arg(long, default_value_t = 8)]
    low_water: usize,
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Ask the running agent of --data-dir what it holds.
    Status {
        #[arg(long, default_value = "/var/lib/nearhost")]
        data_dir: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn agent(a: AgentArgs, sub: Option<AgentCmd>) -> anyhow::Result<()> {
    if let Some(AgentCmd::Status { data_dir }) = sub {
        let r = nearhost_ipam::agent_client::ask_agent(
            &data_dir,
            &nearhost_ipam::agent_client::Request::Status,
            Duration::from_secs(3),
        )?;
        println!("{}", serde_json::to_string_pretty(&r.body.unwrap_or_default())?);
        return Ok(());
    }
    if a.etcd.etcd.is_empty() {
        anyhow::bail!("--etcd: at least one etcd URL is required (or NEARHOST_ETCD)");
    }
    let mode = match a.mode.as_str() {
        "vxlan" => Mode::Vxlan(
            VxlanOptions::new(a.vni, a.underlay.clone())
                .map_err(|e| anyhow::anyhow!("--vni: {e}"))?,
        ),
        _ => Mode::Routed,
    };
    let node_name = match a.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("--node-name: cannot read the hostname")?
            .to_string_lossy()
            .into_owned(),
    };
    let cfg = AgentConfig {
        etcd: a.etcd.options(),
        node_name,
        node_ip: a.node_ip,
        data_dir: a.data_dir,
        lease_ttl: a.lease_ttl,
        block_lease_ttl: a.block_lease_ttl,
        mode,
        pools: a.pools,
        metrics_listen: a.metrics_listen,
        release_grace: Duration::from_secs(a.release_grace),
        min_blocks: a.min_blocks,
        low_water: a.low_water,
    };
    runtime()?.block_on(nearhost_agent::run(cfg, shutdown_signal()))?;
    Ok(())
}

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Define a cluster pool; nodes claim blocks of it.
    Create {
        name: String,
        #[arg(long)]
        subnet: ipnet::IpNet,
        /// Block prefix length (default /26 for IPv4, /122 for IPv6).
        #[arg(long)]
        block_size: Option<u8>,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List pools with their claimed blocks.
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Remove a pool (refused while nodes hold blocks of it, unless --force).
    Rm {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

pub fn pool(cmd: PoolCmd) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let connect = |e: &EtcdArgs| {
            let opts = e.options();
            async move { Etcd::connect(&opts, nearhost_agent::metrics::Metrics::new()).await }
        };
        match cmd {
            PoolCmd::Create { name, subnet, block_size, etcd } => {
                let rec = pools::validate(
                    &name,
                    &subnet,
                    block_size.unwrap_or_else(|| pools::default_block_prefix(&subnet)),
                )?;
                pools::create(&connect(&etcd).await?, &rec).await?;
                println!(
                    "pool {} created: {} in /{} blocks ({} blocks)",
                    rec.name,
                    rec.subnet,
                    rec.block_prefix,
                    rec.block_count()
                );
            }
            PoolCmd::Ls { json, etcd } => {
                let list = pools::list(&connect(&etcd).await?).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!(
                        "{:<16} {:<22} {:>6} {:>14}  nodes",
                        "pool", "subnet", "block", "claimed"
                    );
                    for p in list {
                        println!(
                            "{:<16} {:<22} {:>6} {:>14}  {}",
                            p.pool.name,
                            p.pool.subnet.to_string(),
                            format!("/{}", p.pool.block_prefix),
                            format!("{}/{}", p.blocks_claimed, p.blocks_total),
                            p.nodes.join(",")
                        );
                    }
                }
            }
            PoolCmd::Rm { name, force, etcd } => {
                pools::remove(&connect(&etcd).await?, &name, force).await?;
                println!("pool {name} removed");
            }
        }
        Ok(())
    })
}
