//! BPF host routing (`bpf/host_routing.c`): loading, pinning, tcx attachment
//! and the maps, for one host network namespace.
//!
//! Everything lives under one directory on a bpffs, per host namespace
//! (`ROOT/net-INODE`), so that a short-lived process (the CNI plugin) can
//! leave programs attached and maps filled behind it:
//!
//! ```text
//!   ROOT/net-INODE/nh_pods nh_blocks nh_nat_flows nh_stats   the maps
//!   ROOT/net-INODE/prog_from_pod  prog_from_uplink           the programs
//!   ROOT/net-INODE/link_IFINDEX                              tcx links
//! ```
//!
//! A tcx link lives as long as its pin (or the device): removing the pin
//! detaches the program. No policy here: which device gets which program and
//! when the directory goes is decided by the datapath layer, which also holds
//! the lock that serializes callers.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray};
use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::ProgramError;
use aya::{EbpfLoader, Pod};
use ipnet::IpNet;

use crate::error::{KernelError, Result};

/// The compiled object (clang, at build time: `build.rs`).
static HOST_ROUTING: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/host_routing.o"));

/// bpffs's `statfs` magic.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where nearhost pins by default: the standard bpffs mount.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/nearhost";

/// The two programs and the device side they are attached to (tcx ingress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// On the host end of a pod's veth: pod → local pod.
    FromPod,
    /// On the host's uplink: another host → local pod.
    FromUplink,
}

impl Program {
    /// The program's name as the kernel lists it (bpftool, tcx queries).
    pub fn name(self) -> &'static str {
        self.section()
    }
    fn section(self) -> &'static str {
        match self {
            Program::FromPod => "nh_from_pod",
            Program::FromUplink => "nh_from_uplink",
        }
    }
    fn pin_name(self) -> &'static str {
        match self {
            Program::FromPod => "prog_from_pod",
            Program::FromUplink => "prog_from_uplink",
        }
    }
}

/// A local pod as the programs see it (`struct nh_pod`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodEntry {
    /// The host end of the pod's veth.
    pub ifindex: u32,
    pub pod_mac: [u8; 6],
    pub host_mac: [u8; 6],
}
// SAFETY: repr(C), no padding (4 + 6 + 6 bytes), every bit pattern valid.
unsafe impl Pod for PodEntry {}

/// `struct nh_addr`: IPv4 as ::ffff:a.b.c.d.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addr([u8; 16]);
// SAFETY: a byte array.
unsafe impl Pod for Addr {}

impl Addr {
    fn of(ip: IpAddr) -> Addr {
        Addr(match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        })
    }
    fn ip(&self) -> IpAddr {
        let v6 = std::net::Ipv6Addr::from(self.0);
        v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6))
    }
}

/// The counters of `enum nh_stat`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Packets a pod sent to another pod of this host, redirected.
    pub from_pod_to_pod: u64,
    /// Packets from the uplink for a pod of this host, redirected.
    pub from_uplink_to_pod: u64,
    /// Left to the stack: the destination is no pod of this host.
    pub stack_not_a_pod: u64,
    /// Left to the stack: a reply of a flow that netfilter may have translated.
    pub stack_nat_flow: u64,
    /// Left to the stack: not TCP/UDP over IPv4/IPv6, TTL ending, not for
    /// this host, or not routable from here (no route, MTU).
    pub stack_other: u64,
    /// Packets a pod sent to a pod of another host, redirected to the uplink.
    pub from_pod_to_remote: u64,
}

/// The pinned state of one host namespace.
pub struct HostRouting {
    dir: PathBuf,
}

fn bpf_err(what: impl Into<String>, e: impl std::fmt::Display) -> KernelError {
    // aya's errors carry the errno in their text; keep the verifier's log
    // short enough for a CNI error message.
    let mut msg = e.to_string();
    if msg.len() > 2000 {
        msg.truncate(2000);
        msg.push_str(" …");
    }
    KernelError::Unsupported(format!("{}: {msg}", what.into()))
}

fn map_err(what: &str, e: MapError) -> KernelError {
    if let MapError::SyscallError(s) = &e {
        if s.io_error.raw_os_error() == Some(libc::E2BIG) {
            return KernelError::Unsupported(format!("{what}: the map is full"));
        }
    }
    bpf_err(what, e)
}

/// The oldest kernel with tcx, which the programs are attached with.
pub const TCX_SINCE: (u32, u32) = (6, 6);

/// Refuses kernels without tcx, naming the running one.
pub fn check_tcx() -> Result<()> {
    if crate::kernel_version() < TCX_SINCE {
        return Err(KernelError::Unsupported(format!(
            "BPF host routing attaches its programs with tcx, which needs Linux {}.{} or later; \
             this kernel is {}",
            TCX_SINCE.0,
            TCX_SINCE.1,
            crate::kernel_release()
        )));
    }
    Ok(())
}

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == BPF_FS_MAGIC).unwrap_or(false)
}

/// Makes sure `root`'s parent directory is a bpffs, mounting one when this
/// process runs in the host's (PID 1's) mount namespace. A mount made inside
/// a private mount namespace (`ip netns exec` makes one) would vanish with
/// the process and take the pins along: refused there, with the command that
/// mounts it on the host.
pub fn ensure_bpffs(root: &Path) -> Result<()> {
    let mount_point = root.parent().unwrap_or(root);
    if is_bpffs(mount_point) || is_bpffs(root) {
        return Ok(());
    }
    let own = std::fs::metadata("/proc/self/ns/mnt").map(|m| (m.dev(), m.ino())).ok();
    let init = std::fs::metadata("/proc/1/ns/mnt").map(|m| (m.dev(), m.ino())).ok();
    if own.is_none() || own != init {
        return Err(KernelError::Unsupported(format!(
            "no bpffs is mounted at {}, and this process runs in a mount namespace of its own \
             where a mount would not outlive it; mount it on the host: \
             mount -t bpf bpf {}",
            mount_point.display(),
            mount_point.display()
        )));
    }
    mount_bpffs(mount_point)
}

/// Mounts a bpffs (mode 0700) on `dir`, creating it; nothing when one is
/// there already.
pub fn mount_bpffs(dir: &Path) -> Result<()> {
    if is_bpffs(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| KernelError::io(format!("create {}", dir.display()), e))?;
    nix::mount::mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| {
        KernelError::io(
            format!("mount bpffs on {} (mount -t bpf bpf {})", dir.display(), dir.display()),
            e.into(),
        )
    })
}

/// Unmounts the bpffs on `dir` (lazily: pins go once nothing uses them) and
/// removes the directory; nothing when no bpffs is there.
pub fn unmount_bpffs(dir: &Path) -> Result<()> {
    if !is_bpffs(dir) {
        return Ok(());
    }
    nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| KernelError::io(format!("unmount {}", dir.display()), e.into()))?;
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

impl HostRouting {
    /// The directory of the current thread's network namespace under `root`.
    pub fn dir_for_current_netns(root: &Path) -> Result<PathBuf> {
        let m = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| KernelError::io("stat /proc/thread-self/ns/net", e))?;
        Ok(root.join(format!("net-{}", m.ino())))
    }

    /// Opens the state in `dir`, loading and pinning the programs and maps
    /// when they are not there yet. The caller holds the datapath's lock.
    pub fn open_or_load(dir: &Path) -> Result<HostRouting> {
        let this = HostRouting { dir: dir.to_owned() };
        if this.dir.join(Program::FromUplink.pin_name()).exists() {
            return Ok(this);
        }
        if let Some(root) = dir.parent() {
            ensure_bpffs(root)?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| KernelError::io(format!("create {}", dir.display()), e))?;
        // A directory without the last program's pin is a load that failed
        // half-way (or is this one): on failure it goes, maps and all.
        let loaded = Self::load_into(dir);
        if loaded.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        loaded?;
        Ok(this)
    }

    fn load_into(dir: &Path) -> Result<()> {
        // Maps are pinned (or reused) by name in `dir`; the programs after them,
        // the uplink's last: its pin marks a complete load.
        let mut obj = EbpfLoader::new()
            .map_pin_path(dir)
            .load(HOST_ROUTING)
            .map_err(|e| bpf_err("load the BPF host-routing object", e))?;
        for p in [Program::FromPod, Program::FromUplink] {
            let prog: &mut SchedClassifier = obj
                .program_mut(p.section())
                .ok_or_else(|| {
                    bpf_err(
                        "load the BPF host-routing object",
                        format!("no program {}", p.section()),
                    )
                })?
                .try_into()
                .map_err(|e: ProgramError| bpf_err(format!("program {}", p.section()), e))?;
            prog.load().map_err(|e| verifier_err(p, e))?;
            prog.pin(dir.join(p.pin_name()))
                .map_err(|e| bpf_err(format!("pin {} in {}", p.section(), dir.display()), e))?;
        }
        Ok(())
    }

    /// The state in `dir` if it was loaded.
    pub fn open(dir: &Path) -> Option<HostRouting> {
        dir.join(Program::FromUplink.pin_name())
            .exists()
            .then(|| HostRouting { dir: dir.to_owned() })
    }

    fn link_pin(&self, ifindex: u32) -> PathBuf {
        self.dir.join(format!("link_{ifindex}"))
    }

    /// Attaches `program` at tcx ingress of `ifname` (in the current thread's
    /// network namespace) and pins the link. Attaching again is a no-op.
    pub fn attach(&self, program: Program, ifname: &str, ifindex: u32) -> Result<()> {
        let pin = self.link_pin(ifindex);
        if pin.exists() {
            return Ok(());
        }
        let mut prog = SchedClassifier::from_pin(self.dir.join(program.pin_name()))
            .map_err(|e| bpf_err(format!("open the pinned {}", program.section()), e))?;
        let id = prog
            .attach_with_options(
                ifname,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|e| {
                bpf_err(format!("attach {} to {ifname} (tcx ingress)", program.section()), e)
            })?;
        let link = prog.take_link(id).map_err(|e| bpf_err("take the tcx link", e))?;
        let fd_link = FdLink::try_from(link).map_err(|e| bpf_err("the tcx link", e))?;
        fd_link.pin(&pin).map_err(|e| bpf_err(format!("pin the tcx link of {ifname}"), e))?;
        Ok(())
    }

    /// The names of the programs at tcx ingress of `ifname` (current netns).
    pub fn attached_programs(ifname: &str) -> Result<Vec<String>> {
        let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress)
            .map_err(|e| bpf_err(format!("query tcx ingress of {ifname}"), e))?;
        Ok(progs.iter().map(|p| p.name_as_str().unwrap_or("").to_string()).collect())
    }

    /// Detaches whatever nearhost attached to `ifindex` (removes the link pin).
    pub fn detach(&self, ifindex: u32) -> Result<()> {
        match std::fs::remove_file(self.link_pin(ifindex)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(KernelError::io(format!("remove the tcx link pin of ifindex {ifindex}"), e))
            }
            _ => Ok(()),
        }
    }

    /// The interface indexes with a pinned link.
    pub fn attached(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .map_err(|e| KernelError::io(format!("read {}", self.dir.display()), e))?
        {
            let e = e.map_err(|e| KernelError::io(format!("read {}", self.dir.display()), e))?;
            if let Some(i) = e.file_name().to_str().and_then(|n| n.strip_prefix("link_")) {
                if let Ok(i) = i.parse() {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn map(&self, name: &str) -> Result<MapData> {
        MapData::from_pin(self.dir.join(name)).map_err(|e| map_err(&format!("open map {name}"), e))
    }

    fn pods_map(&self) -> Result<HashMap<MapData, Addr, PodEntry>> {
        HashMap::try_from(Map::HashMap(self.map("nh_pods")?)).map_err(|e| map_err("map nh_pods", e))
    }

    pub fn set_pod(&self, ip: IpAddr, pod: PodEntry) -> Result<()> {
        self.pods_map()?
            .insert(Addr::of(ip), pod, 0)
            .map_err(|e| map_err(&format!("add pod {ip} to nh_pods"), e))
    }

    pub fn remove_pod(&self, ip: IpAddr) -> Result<()> {
        match self.pods_map()?.remove(&Addr::of(ip)) {
            Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            r => r.map_err(|e| map_err(&format!("remove pod {ip} from nh_pods"), e)),
        }
    }

    pub fn pods(&self) -> Result<Vec<(IpAddr, PodEntry)>> {
        let map = self.pods_map()?;
        let mut out = Vec::new();
        for kv in map.iter() {
            let (k, v) = kv.map_err(|e| map_err("read nh_pods", e))?;
            out.push((k.ip(), v));
        }
        Ok(out)
    }

    fn blocks_map(&self) -> Result<LpmTrie<MapData, Addr, u8>> {
        LpmTrie::try_from(Map::LpmTrie(self.map("nh_blocks")?))
            .map_err(|e| map_err("map nh_blocks", e))
    }

    /// Marks `net` as pod addresses: flows towards it are not remembered as
    /// possibly translated.
    pub fn add_block(&self, net: IpNet) -> Result<()> {
        let len = net.prefix_len() as u32 + if net.addr().is_ipv4() { 96 } else { 0 };
        self.blocks_map()?
            .insert(&LpmKey::new(len, Addr::of(net.network())), 1, 0)
            .map_err(|e| map_err(&format!("add pod block {net} to nh_blocks"), e))
    }

    pub fn blocks(&self) -> Result<Vec<IpNet>> {
        let map = self.blocks_map()?;
        let mut out = Vec::new();
        for k in map.keys() {
            let k = k.map_err(|e| map_err("read nh_blocks", e))?;
            let ip = k.data().ip();
            let len = k.prefix_len() - if ip.is_ipv4() { 96 } else { 0 };
            if let Ok(n) = IpNet::new(ip, len as u8) {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats> {
        let map: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(Map::PerCpuArray(self.map("nh_stats")?))
                .map_err(|e| map_err("map nh_stats", e))?;
        let mut sums = [0u64; 6];
        for (i, s) in sums.iter_mut().enumerate() {
            let v = map.get(&(i as u32), 0).map_err(|e| map_err("read nh_stats", e))?;
            *s = v.iter().sum();
        }
        Ok(Stats {
            from_pod_to_pod: sums[0],
            from_uplink_to_pod: sums[1],
            stack_not_a_pod: sums[2],
            stack_nat_flow: sums[3],
            stack_other: sums[4],
            from_pod_to_remote: sums[5],
        })
    }

    /// Detaches everything and removes the directory: programs and maps go
    /// with their last reference.
    pub fn remove(self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(KernelError::io(format!("remove {}", self.dir.display()), e))
            }
            _ => Ok(()),
        }
    }
}

fn verifier_err(p: Program, e: ProgramError) -> KernelError {
    match &e {
        ProgramError::LoadError { io_error, verifier_log } => bpf_err(
            format!("the kernel's verifier rejected {} ({io_error})", p.section()),
            verifier_log.to_string().lines().rev().take(8).collect::<Vec<_>>().join(" | "),
        ),
        _ => bpf_err(format!("load {}", p.section()), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_map_key() {
        for ip in ["198.18.0.5", "2001:2::5"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(Addr::of(ip).ip(), ip);
        }
        assert_eq!(&Addr::of("198.18.0.5".parse().unwrap()).0[10..], &[0xff, 0xff, 198, 18, 0, 5]);
    }
}
