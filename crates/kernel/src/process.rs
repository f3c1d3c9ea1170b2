//! Processes: identity that survives PID reuse (PID + start time from
//! `/proc/PID/stat`), liveness, termination, resource figures, and starting a
//! command inside a network namespace (`setns` between fork and exec).

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::netns::NetNs;

/// A process named by its PID and start time, so that a PID the kernel has
/// handed to a new process is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// Clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

impl Process {
    /// The running process `pid`, if there is one (zombies are not running).
    pub fn of(pid: u32) -> Option<Process> {
        start_time(pid).map(|start| Process { pid, start })
    }

    /// This process.
    pub fn current() -> Process {
        Process::of(std::process::id()).expect("this process is running")
    }

    /// Still the same process, still running.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// SIGCONT (in case it was stopped) and SIGTERM, then SIGKILL when it has
    /// not exited within `grace`. Signals go only while the PID is still this
    /// process. Returns whether it is gone.
    pub fn terminate(&self, grace: Duration) -> bool {
        if !self.signal(Signal::SIGCONT) || !self.signal(Signal::SIGTERM) {
            return true;
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal(Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        !self.alive()
    }

    /// Sends `sig` if the PID is still this process; false when it is gone.
    /// A PID read from a state file is checked first: 0 would signal our own
    /// process group, and one past `i32::MAX` a negative PID, a whole group.
    fn signal(&self, sig: Signal) -> bool {
        let Some(pid) = i32::try_from(self.pid).ok().filter(|p| *p > 0) else { return false };
        self.alive() && kill(Pid::from_raw(pid), sig).is_ok()
    }
}

/// The path of `pid`'s network namespace.
/// The running binary's bytes (`/proc/self/exe`: the file this process was
/// started from, even when a newer one has replaced it on disk since).
pub fn own_executable() -> std::io::Result<Vec<u8>> {
    std::fs::read("/proc/self/exe")
}

pub fn netns_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// The fields of `/proc/PID/stat` after the command name; `None` when there is
/// no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// The command name (field 2) may contain spaces and parentheses: fields are
/// counted from the last ')'. Index 0 is field 3, the state.
fn parse_stat(stat: &str) -> Option<Vec<String>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// Field 22 of `/proc/PID/stat`: when the process started; `None` when there
/// is no such process or it has exited (a zombie or dead process has no
/// namespaces any more).
pub fn start_time(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    if matches!(f.first().map(String::as_str), Some("Z") | Some("X")) {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// User + system CPU time of `pid` in seconds (fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The children of `pid`'s main thread.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether the network namespace `pid` lives in has a TCP socket listening
/// on `port` (IPv4 or IPv6): `/proc/PID/net/tcp*` list that namespace's
/// sockets, so a server started in another namespace can be waited for
/// without entering it.
pub fn listens_tcp(pid: u32, port: u16) -> bool {
    let local = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local_address is column 1, st column 3 (0A = LISTEN)
                cols.get(1).is_some_and(|a| a.ends_with(&local)) && cols.get(3) == Some(&"0A")
            })
        })
    })
}

/// Starts `cmd` inside `ns` (`setns` between fork and exec, so this process
/// never changes namespace); with `new_session` in its own session
/// (`setsid`), so it outlives this process's terminal.
pub fn spawn_in(ns: &NetNs, cmd: &mut Command, new_session: bool) -> std::io::Result<Child> {
    let fd = ns.as_raw_fd();
    // SAFETY: only async-signal-safe calls (setns, setsid) run between fork and
    // exec; `ns` (and so `fd`) outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if new_session && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_seen_and_a_bound_one_is_not() {
        // One socket holds its port throughout, bound before it listens: no
        // other test running beside this one (the namespace's sockets are all
        // in /proc/PID/net/tcp) can listen on that port meanwhile. A closed
        // listener's port could be taken again at once (seen in the lab).
        // SAFETY: plain socket calls on a descriptor this test owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len), 0);
            let mut got = len;
            assert_eq!(
                libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut got),
                0
            );
            let port = u16::from_be(addr.sin_port);
            assert!(!listens_tcp(std::process::id(), port), "bound to {port}, not listening");
            assert_eq!(libc::listen(fd, 1), 0);
            assert!(listens_tcp(std::process::id(), port), "listening on {port}");
            libc::close(fd);
        }
    }

    #[test]
    fn pids_that_name_a_group_are_never_signalled() {
        // 0 is our own process group, and u32::MAX is -1 as an i32: every process.
        for pid in [0, u32::MAX, i32::MAX as u32 + 1] {
            let p = Process { pid, start: 0 };
            assert!(!p.signal(Signal::SIGCONT), "pid {pid} was signalled");
            assert!(p.terminate(Duration::from_millis(1)), "pid {pid} is not a process");
        }
    }

    #[test]
    fn stat_is_parsed_from_the_last_parenthesis() {
        let line =
            "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 12345 1000 10";
        let f = parse_stat(line).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[19], "12345");
        assert_eq!((f[11].as_str(), f[12].as_str()), ("7", "3"));
    }

    #[test]
    fn own_identity_is_stable_and_others_are_not_us() {
        let me = Process::current();
        assert!(me.alive());
        assert_eq!(Process::of(me.pid), Some(me));
        assert_eq!(Process::of(0), None);
        assert_eq!(Process::of(u32::MAX), None);
        let reused = Process { pid: me.pid, start: me.start + 1 };
        assert!(!reused.alive(), "a PID with another start time is another process");
        assert!(rss_kib(me.pid).unwrap() > 0);
        assert!(cpu_seconds(me.pid).is_some());
    }

    #[test]
    fn terminate_ends_a_child_and_leaves_a_reused_pid_alone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let p = Process::of(child.id()).unwrap();
        let impostor = Process { pid: p.pid, start: p.start + 1 };
        assert!(impostor.terminate(Duration::from_millis(50)), "an impostor counts as gone");
        assert!(p.alive(), "the real process was signalled through an impostor");
        std::thread::spawn(move || child.wait());
        assert!(p.terminate(Duration::from_secs(2)));
        assert!(!p.alive());
    }
}
