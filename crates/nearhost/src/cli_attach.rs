//! `nearhost attach | detach | ls | gc | net …`: flags in, `nearhost_attach`
//! calls, human text or `--json` out. No networking logic lives here.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use nearhost_attach::netdef::{DEFAULT_NET_DIR, NET_DIR_ENV};
use nearhost_attach::ops::DEFAULT_CNI_PATH;
use nearhost_attach::record::{DEFAULT_STATE_DIR, STATE_DIR_ENV};
use nearhost_attach::{
    create, AttachError, AttachRequest, Context, EngineChoice, NetDir, Records, Resolver,
};
use serde_json::json;

use crate::attach_view as view;

#[derive(Subcommand)]
pub enum AttachCmd {
    /// Put a running container (Docker, Podman, a PID or a netns path) on a network.
    Attach(AttachArgs),
    /// Take a container off a network and release its addresses.
    Detach(DetachArgs),
    /// List attachments; marks those whose container is gone.
    Ls(LsArgs),
    /// Release the attachments whose container is gone.
    Gc(GcArgs),
    /// Network definitions (CNI config files shared with runtimes).
    #[command(subcommand)]
    Net(NetCmd),
}

#[derive(Subcommand)]
pub enum NetCmd {
    /// List the network definitions.
    Ls(NetLsArgs),
    /// Print one network definition.
    Show(NetShowArgs),
    /// Write a network definition (NAME.conflist) from flags.
    Create(Box<NetCreateArgs>),
}

#[derive(Args)]
pub struct NetDirArg {
    /// Directory of network definitions (.conf / .conflist).
    #[arg(long, env = NET_DIR_ENV, default_value = DEFAULT_NET_DIR, value_name = "DIR")]
    net_dir: PathBuf,
}

#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    net: NetDirArg,
    /// nearhost's state directory (attachment records are kept in attachments/).
    #[arg(long, env = STATE_DIR_ENV, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    state_dir: PathBuf,
    /// Where CNI plugins other than nearhost are looked up (colon-separated).
    #[arg(long, env = "CNI_PATH", default_value = DEFAULT_CNI_PATH, value_name = "DIRS")]
    cni_path: String,
    /// Where TARGET is looked up: auto (a path is a namespace, digits a PID,
    /// else a container in Docker, then Podman), docker or podman.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    Auto,
    Docker,
    Podman,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Container name or ID, PID, or network-namespace path.
    target: String,
    /// The network (its definition's "name").
    #[arg(long, value_name = "NAME")]
    net: String,
    /// The interface name inside the container.
    #[arg(long, default_value = "eth1")]
    ifname: String,
    /// A static address (once per family; becomes CNI_ARGS IP=).
    #[arg(long, value_name = "ADDR")]
    ip: Vec<String>,
    /// A static MAC address (becomes CNI_ARGS MAC=).
    #[arg(long)]
    mac: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct DetachArgs {
    /// Container name or ID, PID, or network-namespace path (also of a container that is gone).
    target: String,
    #[arg(long, value_name = "NAME")]
    net: String,
    /// Only the attachment with this interface name.
    #[arg(long)]
    ifname: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct LsArgs {
    /// Also run CNI CHECK on live attachments (does the interface still match?).
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct GcArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct NetLsArgs {
    #[command(flatten)]
    dir: NetDirArg,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NetShowArgs {
    name: String,
    #[command(flatten)]
    dir: NetDirArg,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NetCreateArgs {
    name: String,
    /// macvlan, ipvlan, bridge or routed.
    #[arg(long)]
    datapath: String,
    /// macvlan/ipvlan: the host interface (default: the one of the default route).
    #[arg(long, value_name = "IFACE")]
    master: Option<String>,
    /// macvlan: bridge, private, vepa, passthru; ipvlan: l2, l3, l3s.
    #[arg(long)]
    mode: Option<String>,
    /// The subnet addresses come from (once per family).
    #[arg(long, value_name = "CIDR", required = true)]
    subnet: Vec<IpNet>,
    /// The subnet's gateway (default: its first address).
    #[arg(long, value_name = "ADDR")]
    gateway: Vec<IpAddr>,
    /// Hand out only START-END of the subnet (once per family).
    #[arg(long, value_name = "START-END", value_parser = create::parse_range)]
    range: Vec<(IpAddr, IpAddr)>,
    #[arg(long)]
    mtu: Option<u32>,
    /// bridge: the bridge's name (default nh0).
    #[arg(long)]
    bridge: Option<String>,
    /// Give containers a default route via the gateway.
    #[arg(long)]
    default_route: bool,
    /// bridge: masquerade traffic leaving the subnet.
    #[arg(long)]
    ip_masq: bool,
    /// macvlan/ipvlan: a second link to the host, so the host reaches its
    /// containers and they reach it ("hostReach").
    #[arg(long)]
    host_reach: bool,
    /// With --host-reach: also route this Service CIDR through the host (repeatable).
    #[arg(long, value_name = "CIDR", requires = "host_reach")]
    service_cidr: Vec<IpNet>,
    /// Where the IPAM state lives (ipam.dataDir) [default: $NEARHOST_STATE_DIR,
    /// else the plugin's /var/lib/nearhost].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Replace an existing definition of NAME.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    dir: NetDirArg,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AttachCmd) -> anyhow::Result<()> {
    let (json, out) = match cmd {
        AttachCmd::Attach(a) => (a.common.json, attach(a)),
        AttachCmd::Detach(a) => (a.common.json, detach(a)),
        AttachCmd::Ls(a) => (a.common.json, ls(a.common, a.check)),
        AttachCmd::Gc(a) => (a.common.json, gc(a.common)),
        AttachCmd::Net(NetCmd::Ls(a)) => (a.json, net_ls(a)),
        AttachCmd::Net(NetCmd::Show(a)) => (a.json, net_show(a)),
        AttachCmd::Net(NetCmd::Create(a)) => (a.json, net_create(*a)),
    };
    match out {
        Ok(()) => Ok(()),
        Err(e) => {
            if json {
                view::print_json(&json!({"error": {"kind": e.kind(), "message": e.to_string()}}));
            }
            Err(e.into())
        }
    }
}

fn context(c: &Common) -> Context {
    let choice = match c.engine {
        Engine::Auto => EngineChoice::Auto,
        Engine::Docker => EngineChoice::Docker,
        Engine::Podman => EngineChoice::Podman,
    };
    Context {
        net_dir: NetDir::new(&c.net.net_dir),
        records: Records::new(&c.state_dir),
        resolver: Resolver::from_env(choice),
        cni_path: std::env::split_paths(&c.cni_path)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
    }
}

fn attach(a: AttachArgs) -> Result<(), AttachError> {
    let req =
        AttachRequest { target: a.target, network: a.net, ifname: a.ifname, ips: a.ip, mac: a.mac };
    let done = nearhost_attach::attach(&context(&a.common), &req)?;
    if a.common.json {
        view::print_json(&view::attachment_json(&done, None));
    } else {
        print!("{}", view::attached_text(&done));
    }
    Ok(())
}

fn detach(a: DetachArgs) -> Result<(), AttachError> {
    let done =
        nearhost_attach::detach(&context(&a.common), &a.target, &a.net, a.ifname.as_deref())?;
    if a.common.json {
        view::print_json(&view::attachment_json(&done, None));
    } else {
        println!(
            "detached {} from network {} (interface {}, released {})",
            view::who(&done.target),
            done.network,
            done.ifname,
            view::or_none(&done.addresses())
        );
    }
    Ok(())
}

fn ls(c: Common, check: bool) -> Result<(), AttachError> {
    let (listed, bad) = nearhost_attach::list(&context(&c), check)?;
    for e in &bad {
        eprintln!("nearhost: {e}");
    }
    if c.json {
        view::print_json(&json!(listed
            .iter()
            .map(|l| view::attachment_json(&l.attachment, Some(&l.status)))
            .collect::<Vec<_>>()));
    } else {
        print!("{}", view::ls_table(&listed));
    }
    Ok(())
}

fn gc(c: Common) -> Result<(), AttachError> {
    let report = nearhost_attach::gc(&context(&c))?;
    if c.json {
        let list = |v: &[nearhost_attach::Listed]| {
            v.iter()
                .map(|l| view::attachment_json(&l.attachment, Some(&l.status)))
                .collect::<Vec<_>>()
        };
        let failed: Vec<_> = report.failed.iter().map(|(l, e)| json!({"attachment": view::attachment_json(&l.attachment, Some(&l.status)), "error": e.to_string()})).collect();
        view::print_json(
            &json!({"removed": list(&report.removed), "kept": list(&report.kept), "failed": failed}),
        );
    } else {
        print!("{}", view::gc_text(&report));
    }
    match report.failed.len() {
        0 => Ok(()),
        _ => Err(AttachError::Many { errors: report.failed.into_iter().map(|(_, e)| e).collect() }),
    }
}

fn net_ls(a: NetLsArgs) -> Result<(), AttachError> {
    let entries = NetDir::new(&a.dir.net_dir).list()?;
    if a.json {
        view::print_json(&json!(entries.iter().map(view::net_entry_json).collect::<Vec<_>>()));
    } else {
        print!("{}", view::net_table(&a.dir.net_dir, &entries));
    }
    Ok(())
}

fn net_show(a: NetShowArgs) -> Result<(), AttachError> {
    let net = NetDir::new(&a.dir.net_dir).find(&a.name)?;
    if a.json {
        view::print_json(
            &json!({"name": net.name, "file": net.file, "datapath": net.datapath(), "subnets": net.subnets(), "config": net.raw}),
        );
    } else {
        println!("# {}", net.file.display());
        println!("{}", serde_json::to_string_pretty(&net.raw).expect("JSON values serialize"));
    }
    Ok(())
}

fn net_create(a: NetCreateArgs) -> Result<(), AttachError> {
    let spec = create::NetSpec {
        name: a.name,
        datapath: a.datapath,
        master: a.master,
        mode: a.mode,
        subnets: a.subnet,
        gateways: a.gateway,
        ranges: a.range,
        mtu: a.mtu,
        bridge: a.bridge,
        default_route: a.default_route,
        ip_masq: a.ip_masq,
        host_reach: a.host_reach.then_some(a.service_cidr),
        // One state directory for records and addresses unless told otherwise.
        data_dir: a.data_dir.or_else(|| {
            std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
        }),
    };
    let config = spec.to_config()?;
    let file = NetDir::new(&a.dir.net_dir).create(&config, a.force)?;
    if a.json {
        view::print_json(&json!({"name": spec.name, "file": file, "config": config}));
    } else {
        let subnets: Vec<String> = spec.subnets.iter().map(ToString::to_string).collect();
        println!(
            "created network {} ({}, {}) in {}",
            spec.name,
            spec.datapath,
            subnets.join(", "),
            file.display()
        );
    }
    Ok(())
}
