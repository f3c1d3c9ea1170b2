//! A small synchronous rtnetlink socket: send one request, collect its answer.
//!
//! A socket stays in the network namespace it was opened in, so the layers above
//! open one per namespace (see [`crate::netns::run_in`]) and then work from both
//! without any further `setns`.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{KernelError, Result};
use crate::netns::{self, NetNs};

/// How often a dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is retried.
const DUMP_RETRIES: usize = 10;
const RECV_BUF: usize = 64 * 1024;
/// `NLMSGERR_ATTR_MSG` in an extended ack: the kernel's human-readable reason.
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;

pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let sock_err = |e: std::io::Error| KernelError::Socket(e.to_string());
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(sock_err)?;
        sock.bind_auto().map_err(sock_err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(sock_err)?;
        // Extended acks give the kernel's own reason ("MTU greater than device
        // maximum") instead of a bare errno; cap_ack keeps error replies short.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(Netlink { sock, seq: fastrand::u32(1..u32::MAX / 2), buf: vec![0; RECV_BUF] })
    }

    /// Opens a socket inside `ns` (on a short-lived thread, so the caller's own
    /// namespace never changes).
    pub fn open_in(ns: &NetNs) -> Result<Self> {
        netns::run_in(ns, Netlink::open)?
    }

    /// Sends a request that expects an acknowledgement.
    pub fn ack(
        &mut self, op: impl FnOnce() -> String, msg: RouteNetlinkMessage, flags: u16,
    ) -> Result<()> {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_ACK | flags).map(|_| ()).map_err(|e| e.with_op(op))
    }

    /// Sends a request whose answer is one or more messages (a `get`).
    pub fn get(
        &mut self, op: impl FnOnce() -> String, msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_REQUEST).map(|r| r.messages).map_err(|e| e.with_op(op))
    }

    /// Dumps a table, retrying when the kernel reports that the dump was
    /// interrupted by a concurrent change.
    pub fn dump(
        &mut self, op: impl Fn() -> String, msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_RETRIES {
            let reply = self
                .exchange(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP)
                .map_err(|e| e.with_op(&op))?;
            if !reply.interrupted {
                return Ok(reply.messages);
            }
        }
        Err(KernelError::Socket(format!(
            "{}: dump interrupted {DUMP_RETRIES} times in a row",
            op()
        )))
    }

    fn exchange(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Reply, Pending> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|e| Pending::Socket(format!("send: {e}")))?;
        self.collect(seq, flags & NLM_F_DUMP == NLM_F_DUMP)
    }

    fn collect(&mut self, seq: u32, multi: bool) -> Result<Reply, Pending> {
        let mut reply = Reply::default();
        loop {
            let n = self.recv()?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| Pending::Socket(format!("decode: {e}")))?;
                let len = parsed.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if parsed.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                if parsed.header.flags & NLM_F_DUMP_INTR != 0 {
                    reply.interrupted = true;
                }
                let is_multipart = parsed.header.flags & NLM_F_MULTIPART != 0;
                match parsed.payload {
                    NetlinkPayload::Done(_) => return Ok(reply),
                    NetlinkPayload::Error(err) => match err.code {
                        None => return Ok(reply),
                        Some(code) => {
                            return Err(Pending::Kernel {
                                errno: code.get().abs(),
                                ext_ack: ext_ack_message(&err.header),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        reply.messages.push(m);
                        if !multi && !is_multipart {
                            return Ok(reply);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn recv(&mut self) -> Result<usize, Pending> {
        loop {
            let mut slice = &mut self.buf[..];
            match self.sock.recv(&mut slice, 0) {
                Ok(n) if n > RECV_BUF => {
                    return Err(Pending::Socket(format!(
                        "reply of {n} bytes exceeds the receive buffer"
                    )))
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Pending::Socket(format!("recv: {e}"))),
            }
        }
    }
}

#[derive(Default)]
struct Reply {
    messages: Vec<RouteNetlinkMessage>,
    interrupted: bool,
}

/// An error not yet labelled with the operation that caused it.
enum Pending {
    Kernel { errno: i32, ext_ack: Option<String> },
    Socket(String),
}

impl Pending {
    fn with_op(self, op: impl FnOnce() -> String) -> KernelError {
        match self {
            Pending::Kernel { errno, ext_ack } => KernelError::Netlink {
                op: op(),
                source: std::io::Error::from_raw_os_error(errno),
                ext_ack,
            },
            Pending::Socket(m) => KernelError::Socket(format!("{}: {m}", op())),
        }
    }
}

/// Extracts `NLMSGERR_ATTR_MSG` from the part of an error reply that follows the
/// errno: the echoed request header (capped, thanks to `NETLINK_CAP_ACK`) and then
/// the extended-ack attributes.
fn ext_ack_message(after_errno: &[u8]) -> Option<String> {
    let mut rest = after_errno.get(NLMSG_HDRLEN..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            return Some(String::from_utf8_lossy(&text[..end]).into_owned());
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_message_is_found_after_the_echoed_header() {
        let mut bytes = vec![0u8; NLMSG_HDRLEN];
        let text = b"MTU greater than device maximum\0";
        let len = (4 + text.len()) as u16;
        bytes.extend_from_slice(&len.to_ne_bytes());
        bytes.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        bytes.extend_from_slice(text);
        assert_eq!(ext_ack_message(&bytes).as_deref(), Some("MTU greater than device maximum"));
    }

    #[test]
    fn ext_ack_message_absent_or_truncated_gives_none() {
        assert_eq!(ext_ack_message(&[0u8; 8]), None);
        let mut bytes = vec![0u8; NLMSG_HDRLEN];
        bytes.extend_from_slice(&[200, 0, 1, 0, b'x']);
        assert_eq!(ext_ack_message(&bytes), None);
    }
}
