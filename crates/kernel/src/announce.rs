//! Address announcements: a gratuitous ARP for IPv4 and an unsolicited neighbour
//! advertisement for IPv6, so neighbours and switches learn a (re-used) address's
//! new MAC at once instead of after their cache times out.
//!
//! Both functions act in the calling thread's namespace.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{KernelError, Result};
use crate::link::Mac;

const ETH_P_ARP: u16 = 0x0806;
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

/// The 28-byte ARP payload of a gratuitous ARP request for `ip` at `mac`.
pub fn garp_payload(mac: Mac, ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // RFC 5227 announcement: target hardware address zero, target IP = sender IP.
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Sends a gratuitous ARP for `ip` out of link `index` (broadcast).
pub fn gratuitous_arp(index: u32, mac: Mac, ip: Ipv4Addr) -> Result<()> {
    let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(ETH_P_ARP.to_be()), "open packet socket")?;
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid initial value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let payload = garp_payload(mac, ip);
    // SAFETY: payload and addr outlive the call; lengths are exact.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(last_err(&format!("send gratuitous ARP for {ip} on link #{index}")));
    }
    Ok(())
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
            libc::setsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, opt, (&val as *const i32).cast(), size_of::<i32>() as u32)
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
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&src as *const libc::sockaddr_in6).cast(), size_of::<libc::sockaddr_in6>() as u32) };
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
    fn garp_bytes() {
        let p = garp_payload([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 5));
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&p[14..18], &[198, 18, 0, 5]);
        assert_eq!(&p[24..28], &[198, 18, 0, 5]);
    }

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
