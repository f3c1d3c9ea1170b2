//! A fake host for tuning tests: `/proc` and `/sys` as the kernel lays
//! them out (CPU topology, NUMA nodes, NICs with MSI-X queue IRQs, queue
//! masks, the sysctls tuning reads), written under a directory that
//! `nearhost tune --root` and `nearhost_tune::Host::read` take for `/`.

use std::path::Path;

use nearhost_tune::{CpuSet, Host};

/// A host shape: `nodes` NUMA nodes × `cores` cores × `threads` threads,
/// numbered as Linux numbers a two-socket Intel host (first threads of every
/// core first, node by node; then the second threads), and NICs with
/// `queues` queue IRQs each.
pub struct Shape {
    pub nodes: u32,
    pub cores: u32,
    pub threads: u32,
    /// (name, queues, NUMA node).
    pub nics: Vec<(&'static str, u32, Option<u32>)>,
}

impl Shape {
    pub fn ncpus(&self) -> u32 {
        self.nodes * self.cores * self.threads
    }

    /// (node, core) of CPU `id`.
    pub fn place(&self, id: u32) -> (u32, u32) {
        let per_thread = self.nodes * self.cores;
        let within = id % per_thread;
        (within / self.cores, within % self.cores)
    }

    pub fn write(&self, root: &Path) {
        let w = |p: &str, v: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        };
        let n = self.ncpus();
        w("sys/devices/system/cpu/online", &format!("0-{}", n - 1));
        for node in 0..self.nodes {
            let cpus: CpuSet = (0..n).filter(|c| self.place(*c).0 == node).collect();
            w(&format!("sys/devices/system/node/node{node}/cpulist"), &cpus.to_list());
        }
        for c in 0..n {
            let (node, core) = self.place(c);
            w(&format!("sys/devices/system/cpu/cpu{c}/topology/core_id"), &core.to_string());
            w(
                &format!("sys/devices/system/cpu/cpu{c}/topology/physical_package_id"),
                &node.to_string(),
            );
        }
        let all = CpuSet::of(0..n);
        let mut interrupts = String::from("           CPU0\n");
        let mut irq = 40;
        for (name, queues, node) in &self.nics {
            let dev = format!("sys/class/net/{name}/device");
            w(&format!("{dev}/numa_node"), &node.map_or("-1".into(), |n| n.to_string()));
            // The link vector, then one per queue.
            for q in 0..=*queues {
                let label =
                    if q == 0 { name.to_string() } else { format!("{name}-TxRx-{}", q - 1) };
                w(&format!("{dev}/msi_irqs/{irq}"), "msix");
                w(&format!("proc/irq/{irq}/smp_affinity_list"), &all.to_list());
                interrupts +=
                    &format!(" {irq}:   0  IR-PCI-MSIX-0000:3b:00.0 {q}-edge      {label}\n");
                irq += 1;
            }
            for q in 0..*queues {
                w(
                    &format!("sys/class/net/{name}/queues/rx-{q}/rps_cpus"),
                    &CpuSet::new().to_mask(n),
                );
                w(&format!("sys/class/net/{name}/queues/rx-{q}/rps_flow_cnt"), "0");
                w(
                    &format!("sys/class/net/{name}/queues/tx-{q}/xps_cpus"),
                    &CpuSet::new().to_mask(n),
                );
            }
        }
        // A virtual interface: not tuned.
        std::fs::create_dir_all(root.join("sys/class/net/lo")).unwrap();
        w("proc/interrupts", &interrupts);
        for (p, v) in [
            ("proc/sys/net/core/rps_sock_flow_entries", "0"),
            ("proc/sys/net/ipv4/tcp_tw_reuse", "2"),
            ("proc/sys/net/ipv4/tcp_fin_timeout", "60"),
            ("proc/sys/net/ipv4/tcp_slow_start_after_idle", "1"),
            ("proc/sys/net/ipv4/ip_local_port_range", "32768\t60999"),
            ("proc/sys/net/ipv4/tcp_max_tw_buckets", "262144"),
            ("proc/sys/fs/file-max", "9223372036854775807"),
            ("proc/sys/net/core/busy_poll", "0"),
            ("proc/sys/net/core/busy_read", "0"),
            ("sys/kernel/debug/sched/migration_cost_ns", "500000"),
        ] {
            w(p, v);
        }
    }

    /// The tree in a temporary directory, and the host read from it.
    pub fn host(&self) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        self.write(dir.path());
        let host = Host::read(dir.path()).unwrap();
        (dir, host)
    }
}

/// Every file under `dir` (except those whose path contains `except`) with
/// its bytes, sorted: what "changed nothing" and "restored byte for byte"
/// compare.
pub fn snapshot(dir: &Path, except: &str) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut v: Vec<_> = files
        .into_iter()
        .filter(|p| except.is_empty() || !p.to_string_lossy().contains(except))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}
