//! What a host is, for tuning: read from a root directory laid out as the
//! kernel lays out `/proc` and `/sys` (`/` on a real host):
//!
//! ```text
//! sys/devices/system/cpu/online                     CPU list
//! sys/devices/system/cpu/cpuN/topology/core_id      the CPU's core
//! sys/devices/system/cpu/cpuN/topology/physical_package_id
//! sys/devices/system/node/nodeN/cpulist             the node's CPUs (no node dirs: one node)
//! sys/class/net/IF/device                           only NICs with a device are tuned
//! sys/class/net/IF/device/driver                    -> …/drivers/NAME
//! sys/class/net/IF/device/numa_node                 -1: none
//! sys/class/net/IF/device/msi_irqs/N                the device's MSI/MSI-X IRQs
//! sys/class/net/IF/queues/rx-N/{rps_cpus,rps_flow_cnt}
//! sys/class/net/IF/queues/tx-N/xps_cpus
//! proc/interrupts                                   IRQ names (the last column)
//! proc/irq/N/smp_affinity_list
//! proc/sys/…                                        sysctls
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{CpuSet, Error};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub id: u32,
    pub node: u32,
    /// `core_id`, unique within a package.
    pub core: u32,
    pub package: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Irq {
    pub number: u32,
    /// Its name in `/proc/interrupts` (`eth0-TxRx-0`; igb with separate
    /// vectors: `eth0-rx-0`, `eth0-tx-0`).
    pub name: String,
    /// The queue it serves: the number its name ends in.
    pub queue: Option<u32>,
    pub affinity: CpuSet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub name: String,
    pub driver: Option<String>,
    pub numa_node: Option<u32>,
    /// The IRQs of its queues, in queue order (not the link/"other" vector).
    pub queue_irqs: Vec<Irq>,
    /// Per receive queue: (rps_cpus, rps_flow_cnt).
    pub rx: Vec<(CpuSet, u32)>,
    /// Per transmit queue: xps_cpus (`None` where the kernel has no XPS).
    pub tx: Vec<Option<CpuSet>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    #[serde(skip)]
    pub root: PathBuf,
    pub cpus: Vec<Cpu>,
    pub nics: Vec<Nic>,
    /// The sysctls tuning touches, by path under `proc/sys` (or the debugfs
    /// path of those that moved there), with their current values; absent
    /// ones are not in the map.
    pub sysctls: BTreeMap<String, String>,
}

/// Words in an IRQ name that mark a vector that is not a queue's.
const NOT_A_QUEUE: &[&str] = &["async", "other", "ctrl", "misc", "link", "config", "fdir"];

impl Host {
    /// Reads the host under `root` (`/` on a real host).
    pub fn read(root: &Path) -> Result<Host, Error> {
        let cpus = read_cpus(root)?;
        let names = irq_names(root)?;
        let mut nics = Vec::new();
        let net = root.join("sys/class/net");
        let mut ifaces: Vec<String> = std::fs::read_dir(&net)
            .map_err(|e| Error::io(format!("list {}", net.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        ifaces.sort();
        for name in ifaces {
            let dev = net.join(&name).join("device");
            if !dev.exists() {
                continue; // virtual: nothing to tune
            }
            nics.push(read_nic(root, &name, &names)?);
        }
        let mut sysctls = BTreeMap::new();
        for key in crate::plan::SYSCTL_PATHS {
            if let Some(v) = read_opt(&root.join(key))? {
                sysctls.insert(key.to_string(), v);
            }
        }
        Ok(Host { root: root.to_path_buf(), cpus, nics, sysctls })
    }

    pub fn all_cpus(&self) -> CpuSet {
        self.cpus.iter().map(|c| c.id).collect()
    }

    /// The number the masks are sized for: the highest CPU + 1.
    pub fn ncpus(&self) -> u32 {
        self.cpus.iter().map(|c| c.id + 1).max().unwrap_or(1)
    }

    /// Node numbers, ascending.
    pub fn nodes(&self) -> Vec<u32> {
        let mut n: Vec<u32> = self.cpus.iter().map(|c| c.node).collect();
        n.sort_unstable();
        n.dedup();
        n
    }

    pub fn node_cpus(&self, node: u32) -> CpuSet {
        self.cpus.iter().filter(|c| c.node == node).map(|c| c.id).collect()
    }

    pub fn node_of(&self, cpu: u32) -> Option<u32> {
        self.cpus.iter().find(|c| c.id == cpu).map(|c| c.node)
    }

    /// The CPUs that share `cpu`'s core (its hyperthread siblings and itself).
    pub fn core_siblings(&self, cpu: u32) -> CpuSet {
        match self.cpus.iter().find(|c| c.id == cpu) {
            Some(me) => self
                .cpus
                .iter()
                .filter(|c| c.package == me.package && c.core == me.core)
                .map(|c| c.id)
                .collect(),
            None => CpuSet::new(),
        }
    }

    pub fn nic(&self, name: &str) -> Option<&Nic> {
        self.nics.iter().find(|n| n.name == name)
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(format!("read {}", path.display()), e))
}

fn read_opt(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn read_num(path: &Path) -> Result<u32, Error> {
    let s = read(path)?;
    s.parse().map_err(|_| Error::Input(format!("{}: {s:?} is not a number", path.display())))
}

fn read_cpus(root: &Path) -> Result<Vec<Cpu>, Error> {
    let sys = root.join("sys/devices/system");
    let online = CpuSet::parse_list(&read(&sys.join("cpu/online"))?)?;
    let mut node_of = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(sys.join("node")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            for cpu in CpuSet::parse_list(&read(&e.path().join("cpulist"))?)?.iter() {
                node_of.insert(cpu, n);
            }
        }
    }
    online
        .iter()
        .map(|id| {
            let topo = sys.join(format!("cpu/cpu{id}/topology"));
            Ok(Cpu {
                id,
                node: node_of.get(&id).copied().unwrap_or(0),
                core: read_num(&topo.join("core_id"))?,
                package: read_num(&topo.join("physical_package_id"))?,
            })
        })
        .collect()
}

/// IRQ number → name, from `/proc/interrupts` (the last field of each line).
fn irq_names(root: &Path) -> Result<BTreeMap<u32, String>, Error> {
    let text = read(&root.join("proc/interrupts"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let n = num.trim().parse::<u32>().ok()?;
            Some((n, rest.split_whitespace().last()?.to_string()))
        })
        .collect())
}

/// The queue number at the end of an IRQ name (`eth0-TxRx-3` → 3).
fn queue_index(name: &str) -> Option<u32> {
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

fn read_nic(root: &Path, name: &str, names: &BTreeMap<u32, String>) -> Result<Nic, Error> {
    let dir = root.join("sys/class/net").join(name);
    let dev = dir.join("device");
    let driver = std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let numa_node = read_opt(&dev.join("numa_node"))?.and_then(|s| s.parse::<u32>().ok());
    let mut irqs: Vec<Irq> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dev.join("msi_irqs")) {
        for e in entries.flatten() {
            let Ok(number) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let irq_name = names.get(&number).cloned().unwrap_or_default();
            let lower = irq_name.to_ascii_lowercase();
            if irq_name.is_empty()
                || irq_name == name
                || NOT_A_QUEUE.iter().any(|w| lower.contains(w))
            {
                continue;
            }
            let affinity = CpuSet::parse_list(&read(
                &root.join(format!("proc/irq/{number}/smp_affinity_list")),
            )?)?;
            let queue = queue_index(&irq_name);
            irqs.push(Irq { number, name: irq_name, affinity, queue });
        }
    }
    irqs.sort_by_key(|i| (i.queue, i.number));
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    for q in 0.. {
        let d = dir.join(format!("queues/rx-{q}"));
        if !d.exists() {
            break;
        }
        let rps = CpuSet::parse_mask(&read(&d.join("rps_cpus"))?)?;
        let flows = read_opt(&d.join("rps_flow_cnt"))?.and_then(|s| s.parse().ok()).unwrap_or(0);
        rx.push((rps, flows));
    }
    for q in 0.. {
        let d = dir.join(format!("queues/tx-{q}"));
        if !d.exists() {
            break;
        }
        tx.push(match read_opt(&d.join("xps_cpus"))? {
            Some(m) => Some(CpuSet::parse_mask(&m)?),
            None => None,
        });
    }
    Ok(Nic { name: name.to_string(), driver, numa_node, queue_irqs: irqs, rx, tx })
}
