//! IPv6 address announcements: an unsolicited neighbour advertisement, so
//! neighbours learn a (re-used) address's new MAC at once instead of after their
//! cache times out. (IPv4 is announced by the kernel: `arp_notify`.)
//!
//! Acts in the calling thread's namespace.

use std::mem::size_of;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{KernelError, Result};
use crate::link::Mac;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn last_err(what: &str) -> KernelError {
    KernelError::io(what, std::io::Error::last_os_error())
}

fn socket(domain: i32, kind: i32, proto: i32, what: &str) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned immediately.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(last_err(what));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The ICMPv6 body of an unsolicited neighbour advertisement (override flag set,
/// target link-layer address option). The kernel fills in the checksum.
pub fn unsolicited_na_payload(mac: Mac, ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // neighbour advertisement
    p[4] = 0x20; // O (override); not S: it answers no solicitation
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = 2; // option: target link-layer address
    p[25] = 1; // length in units of 8 octets
    p[26..32].copy_from_slice(&mac);
    p
}

/// Sends an unsolicited neighbour advertisement for `ip` to all nodes on link `index`.
pub fn unsolicited_na(index: u32, mac: Mac, ip: Ipv6Addr) -> Result<()> {
    let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6, "open ICMPv6 socket")?;
    let set = |opt: i32, val: i32, what: &str| -> Result<()> {
        // SAFETY: setsockopt with an int option value.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&val as *const i32).cast(),
                size_of::<i32>() as u32,
            )
        };
        if r < 0 {
            return Err(last_err(what));
        }
        Ok(())
    };
    // RFC 4861 §7.1.2: receivers drop NAs whose hop limit is not 255.
    set(libc::IPV6_MULTICAST_HOPS, 255, "set IPV6_MULTICAST_HOPS")?;
    set(libc::IPV6_MULTICAST_IF, index as i32, "set IPV6_MULTICAST_IF")?;
    // SAFETY: sockaddr_in6 is plain data.
    let mut src: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    src.sin6_family = libc::AF_INET6 as u16;
    src.sin6_addr.s6_addr = ip.octets();
    // SAFETY: valid sockaddr_in6 of exact length.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&src as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    if r < 0 {
        return Err(last_err(&format!("bind ICMPv6 socket to {ip}")));
    }
    let mut dst = src;
    dst.sin6_addr.s6_addr = ALL_NODES.octets();
    dst.sin6_scope_id = index;
    let payload = unsolicited_na_payload(mac, ip);
    // SAFETY: payload and dst outlive the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&dst as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    if n < 0 {
        return Err(last_err(&format!("send unsolicited NA for {ip} on link #{index}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn na_bytes() {
        let ip: Ipv6Addr = "2001:2::5".parse().unwrap();
        let p = unsolicited_na_payload([2, 0, 0, 0, 0, 1], ip);
        assert_eq!(p[0], 136);
        assert_eq!(p[4], 0x20);
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..], &[2, 0, 0, 0, 0, 1]);
    }
}
