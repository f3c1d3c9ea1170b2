//! Route additions as the kernel announces them: a netlink socket subscribed
//! to the IPv4 route group (`RTM_NEWROUTE`) in one namespace. A socket keeps
//! the namespace it was opened in, so it is read from any thread. Used to time
//! route convergence from the kernel's own events, not by polling.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{KernelError, Result};
use crate::netns::{self, NetNs};

pub struct RouteEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl RouteEvents {
    /// Subscribes inside `ns`; each [`RouteEvents::added`] waits at most `timeout`.
    pub fn subscribe(ns: &NetNs, timeout: Duration) -> Result<Self> {
        let fd = netns::run_in(ns, open)??;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: setsockopt(2) on a descriptor we own, with a timeval it only reads.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc != 0 {
            return Err(KernelError::io("set the route events' receive timeout", last_error()));
        }
        Ok(RouteEvents { fd, buf: vec![0; 65536] })
    }

    /// The IPv4 destinations of the routes added since the last call; empty
    /// when none came within the timeout.
    pub fn added(&mut self) -> Result<Vec<IpNet>> {
        // SAFETY: recv(2) into our own buffer, at most its length.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0)
        };
        if n < 0 {
            let e = last_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(Vec::new()),
                _ => Err(KernelError::io("read route events", e)),
            };
        }
        Ok(new_routes(&self.buf[..n as usize]))
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn open() -> Result<OwnedFd> {
    // SAFETY: socket(2)/bind(2) with a zeroed sockaddr_nl we fill in; the
    // descriptor is owned from here on.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
        if fd < 0 {
            return Err(KernelError::io("open a netlink socket for route events", last_error()));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        if libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_nl).cast(), len) != 0 {
            return Err(KernelError::io("join the IPv4 route group", last_error()));
        }
        Ok(fd)
    }
}

/// The destinations of the `RTM_NEWROUTE` messages in `buf` (IPv4 only).
fn new_routes(buf: &[u8]) -> Vec<IpNet> {
    let u16_at = |b: &[u8], i: usize| usize::from(u16::from_ne_bytes([b[i], b[i + 1]]));
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        // nlmsghdr (16 bytes), then rtmsg (12 bytes: family, dst_len, …), then attributes.
        if u16_at(msg, 4) == usize::from(libc::RTM_NEWROUTE) && msg.len() >= 28 {
            let dst_len = msg[17];
            let mut a = 28;
            while a + 4 <= msg.len() {
                let (alen, atype) = (u16_at(msg, a), u16_at(msg, a + 2));
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                if atype == usize::from(libc::RTA_DST) && alen == 8 {
                    let d = &msg[a + 4..a + 8];
                    let ip = IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]));
                    out.extend(IpNet::new(ip, dst_len).ok());
                }
                a += (alen + 3) & !3;
            }
        }
        off += (len + 3) & !3;
    }
    out
}
