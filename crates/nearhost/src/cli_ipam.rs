//! `nearhost ipam check | repair`: the embedded IPAM's state files. A state
//! file that cannot be read stops every ADD and DEL of its network (code 5);
//! `repair` rebuilds it from what knows which container holds which address —
//! the runtimes' CNI result cache (libcni's `cniCacheV1` files, written by
//! containerd and Podman for every ADD) and `nearhost attach`'s records — and
//! keeps the unreadable file beside it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use clap::Subcommand;
use nearhost_attach::record::{Records, DEFAULT_STATE_DIR, STATE_DIR_ENV};
use nearhost_ipam::{FileStore, Owner, Reservation, State};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum IpamCmd {
    /// Read every state file under --data-dir; exit 1 if one is unreadable.
    Check {
        #[arg(long, default_value = nearhost_ipam::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild an unreadable state file (STORE: the network name, or
    /// pool-NAME for a cluster pool) from the runtimes' result cache and
    /// nearhost attach's records. A readable file is left alone.
    Repair {
        store: String,
        #[arg(long, default_value = nearhost_ipam::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// libcni's result cache (containerd, Podman with CNI).
        #[arg(long, default_value = "/var/lib/cni/results")]
        cni_cache: PathBuf,
        /// nearhost attach's state directory (records in attachments/).
        #[arg(long, env = STATE_DIR_ENV, default_value = DEFAULT_STATE_DIR)]
        attach_state: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: IpamCmd) -> anyhow::Result<()> {
    match cmd {
        IpamCmd::Check { data_dir, json } => check(&data_dir, json),
        IpamCmd::Repair { store, data_dir, cni_cache, attach_state, json } => {
            repair(&store, &data_dir, &cni_cache, &attach_state, json)
        }
    }
}

fn check(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let mut stores: Vec<String> = std::fs::read_dir(data_dir)
        .with_context(|| format!("read {}", data_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stores.sort();
    let mut report = Vec::new();
    let mut bad = 0;
    for name in stores {
        let state = FileStore::new(data_dir, &name).and_then(|s| {
            use nearhost_ipam::Store;
            s.read()
        });
        match state {
            Ok(s) => report.push(json!({"store": name, "ok": true, "reservations": s.reservations.len(), "blocks": s.blocks})),
            Err(e) => {
                bad += 1;
                report.push(json!({"store": name, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in &report {
            match r["ok"].as_bool() {
                Some(true) => {
                    println!(
                        "{}: ok, {} reservations",
                        r["store"].as_str().unwrap(),
                        r["reservations"]
                    )
                }
                _ => println!(
                    "{}: UNREADABLE: {}",
                    r["store"].as_str().unwrap(),
                    r["error"].as_str().unwrap()
                ),
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} state file(s) unreadable");
    }
    Ok(())
}

/// One attachment's addresses, as a source recorded them.
struct Held {
    owner: Owner,
    addresses: Vec<IpAddr>,
    source: String,
}

/// Whether a network config draws from `store`: the embedded IPAM of network
/// `store`, or the cluster pool of `pool-NAME`.
fn draws_from(conf: &Value, network: &str, store: &str) -> bool {
    let ipam = &conf["ipam"];
    if ipam["type"] != "nearhost" {
        return false;
    }
    match (store.strip_prefix("pool-"), ipam["pool"].as_str()) {
        (Some(pool), Some(p)) => p == pool,
        (None, None) => network == store,
        _ => false,
    }
}

fn addresses(result: &Value) -> Vec<IpAddr> {
    let ips = result["ips"].as_array().into_iter().flatten();
    ips.filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok()).collect()
}

/// libcni's cache: `NETWORK-CONTAINERID-IFNAME` files with the ADD's config
/// (base64) and result.
fn from_cni_cache(dir: &Path, store: &str) -> Vec<Held> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(v) =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            eprintln!("nearhost: skipping {}: not a CNI cache entry", path.display());
            continue;
        };
        let conf: Option<Value> = v["config"]
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (Some(net), Some(id), Some(ifname), Some(conf)) =
            (v["networkName"].as_str(), v["containerId"].as_str(), v["ifName"].as_str(), conf)
        else {
            continue;
        };
        // A conflist's cache holds the list; nearhost is one of its plugins.
        let plugins: Vec<&Value> = match conf["plugins"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![&conf],
        };
        if plugins.iter().any(|p| draws_from(p, net, store)) {
            out.push(Held {
                owner: Owner::new(id, ifname).on(net),
                addresses: addresses(&v["result"]),
                source: path.display().to_string(),
            });
        }
    }
    out
}

fn from_attach_records(state_dir: &Path, store: &str) -> anyhow::Result<Vec<Held>> {
    let (records, unreadable) = Records::new(state_dir).list()?;
    for e in unreadable {
        eprintln!("nearhost: skipping an attachment record: {e}");
    }
    Ok(records
        .iter()
        .filter(|a| a.plugins.iter().any(|p| draws_from(p, &a.network, store)))
        .filter_map(|a| {
            Some(Held {
                owner: Owner::new(&a.target.container_id, &a.ifname).on(&a.network).by_attach(true),
                addresses: addresses(a.result.as_ref()?),
                source: format!("nearhost attach ({} on {})", a.target.container_id, a.network),
            })
        })
        .collect())
}

fn repair(
    store: &str, data_dir: &Path, cni_cache: &Path, attach_state: &Path, json: bool,
) -> anyhow::Result<()> {
    let fs = FileStore::new(data_dir, store)?;
    let mut held = from_cni_cache(cni_cache, store);
    held.extend(from_attach_records(attach_state, store)?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut state = State::default();
    let mut recovered = Vec::new();
    let mut conflicts = Vec::new();
    for h in &held {
        for ip in &h.addresses {
            match state.reservations.get(ip) {
                Some(r) if r.owner != h.owner => conflicts.push(json!({
                    "address": ip, "kept": r.owner.to_string(), "also": h.owner.to_string(), "source": h.source})),
                Some(_) => {}
                None => {
                    state.reservations.insert(*ip, Reservation { owner: h.owner.clone(), since: now });
                    recovered.push(json!({"address": ip, "owner": h.owner.to_string(), "network": h.owner.network, "source": h.source}));
                }
            }
        }
    }
    let rebuilt: BTreeMap<IpAddr, Reservation> = state.reservations.clone();
    let aside = fs.repair(move || Ok(State { reservations: rebuilt, ..State::default() }))?;
    let report = json!({"store": store, "dir": fs.dir(), "repaired": aside.is_some(), "movedAside": aside, "recovered": recovered, "conflicts": conflicts});
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    match aside {
        None => println!("{}: the state file reads fine; nothing done", fs.dir().display()),
        Some(a) => {
            println!("{}: rebuilt; the unreadable file is {}", fs.dir().display(), a.display());
            for r in &recovered {
                println!(
                    "  {} for {} (from {})",
                    r["address"].as_str().unwrap_or(""),
                    r["owner"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or("")
                );
            }
            for c in &conflicts {
                println!("  CONFLICT: {} claimed by {} and {}", c["address"], c["kept"], c["also"]);
            }
            if !store.starts_with("pool-") {
                return Ok(());
            }
            println!("  the node agent records its blocks of the pool again at the next ADD that needs them");
        }
    }
    Ok(())
}
