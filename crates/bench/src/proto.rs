//! The bench wire protocol (documented in docs/bench.md, "Wire protocol").
//!
//! A TCP connection to `serve` starts with a 16-byte hello that fixes what the
//! connection does for its whole life, so the server needs no per-size flags
//! and requests can stay as small as 1 byte (netperf TCP_RR's default):
//!
//! ```text
//! offset 0  4 bytes  magic "NHB1"
//! offset 4  1 byte   mode: 1 = echo, 2 = sink, 3 = source
//! offset 5  1 byte   flags: bit 0 = source mode sends with TCP_NODELAY
//! offset 6  2 bytes  zero
//! offset 8  u32 BE   request size  (echo: bytes per request, 1 ..= 16 MiB)
//! offset 12 u32 BE   response size (echo: bytes per response, 1 ..= 16 MiB)
//! ```
//!
//! The server answers `"NHOK"` (or `"NHER"` and closes). Then, in echo mode,
//! every `request size` bytes the client sends are answered by
//! `response size` bytes (requests may be pipelined; answers come in order).
//! In sink mode the server discards everything; when the client shuts down
//! its write side the server replies with the total it received (u64 BE) and
//! closes. In source mode the server sends bytes until the client closes.
//!
//! A connection whose first 4 bytes are not the magic is treated as
//! HTTP/1.1. UDP datagrams are echoed back verbatim; the client puts a
//! sequence number (u64 BE) in bytes 0..8 and its send time (u64 BE,
//! client clock, ns) in bytes 8..16; the server never interprets them.

/// First bytes of every bench TCP connection.
pub const MAGIC: [u8; 4] = *b"NHB1";
/// Length of the hello.
pub const HELLO_LEN: usize = 16;
/// Server's answer to an accepted hello.
pub const ACK_OK: [u8; 4] = *b"NHOK";
/// Server's answer to a rejected hello (then it closes).
pub const ACK_ERR: [u8; 4] = *b"NHER";
/// Largest request or response size in echo mode.
pub const MAX_MESSAGE: u32 = 16 << 20;
/// Smallest UDP datagram: room for the sequence number and the timestamp.
pub const MIN_DATAGRAM: u32 = 16;
/// Largest UDP datagram payload (IPv4 limit).
pub const MAX_DATAGRAM: u32 = 65_507;

/// What a TCP connection does after the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpMode {
    /// Fixed-size request/response.
    Echo {
        /// Bytes per request.
        request_size: u32,
        /// Bytes per response.
        response_size: u32,
    },
    /// Client sends, server discards and finally reports the byte count.
    Sink,
    /// Server sends, client discards.
    Source {
        /// Send with TCP_NODELAY (iperf3 -N); off by default, as bulk
        /// senders (and iperf3) normally run.
        nodelay: bool,
    },
}

/// Why a hello was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The connection does not start with [`MAGIC`].
    #[error("bad magic (not a bench client)")]
    BadMagic,
    /// The mode byte is not 1, 2 or 3.
    #[error("unknown mode {0}")]
    UnknownMode(u8),
    /// An echo size is 0 or above [`MAX_MESSAGE`].
    #[error("message size {0} out of range 1..={MAX_MESSAGE}")]
    BadSize(u32),
}

impl TcpMode {
    /// The 16-byte hello announcing this mode.
    pub fn hello(self) -> [u8; HELLO_LEN] {
        let (mode, flags, req, resp) = match self {
            TcpMode::Echo { request_size, response_size } => {
                (1u8, 0u8, request_size, response_size)
            }
            TcpMode::Sink => (2, 0, 0, 0),
            TcpMode::Source { nodelay } => (3, u8::from(nodelay), 0, 0),
        };
        let mut out = [0u8; HELLO_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = mode;
        out[5] = flags;
        out[8..12].copy_from_slice(&req.to_be_bytes());
        out[12..16].copy_from_slice(&resp.to_be_bytes());
        out
    }

    /// Decodes a hello.
    pub fn from_hello(bytes: &[u8; HELLO_LEN]) -> Result<TcpMode, HelloError> {
        if bytes[..4] != MAGIC {
            return Err(HelloError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        match bytes[4] {
            1 => {
                let (request_size, response_size) = (word(8), word(12));
                for size in [request_size, response_size] {
                    if size == 0 || size > MAX_MESSAGE {
                        return Err(HelloError::BadSize(size));
                    }
                }
                Ok(TcpMode::Echo { request_size, response_size })
            }
            2 => Ok(TcpMode::Sink),
            3 => Ok(TcpMode::Source { nodelay: bytes[5] & 1 != 0 }),
            other => Err(HelloError::UnknownMode(other)),
        }
    }
}

/// `len` bytes of deterministic pseudo-random filler for payloads.
///
/// Not zeros: a zero-filled buffer from a fresh allocation (or `.bss`) is
/// backed by the kernel's single shared zero page, so every copy reads the
/// same 4 KiB that never leaves the CPU cache — bulk throughput measured
/// from it is inflated (by tens of percent on a veth pair) compared with
/// real data, which iperf3, for one, sends.
pub fn filler(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and enough to make every page distinct.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes the sequence number and timestamp into a datagram buffer
/// (at least [`MIN_DATAGRAM`] bytes).
pub(crate) fn put_seq(buf: &mut [u8], seq: u64, stamp_ns: u64) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&stamp_ns.to_be_bytes());
}

/// Reads (sequence number, timestamp) of an echoed datagram, if it is long enough.
pub(crate) fn get_seq(buf: &[u8]) -> Option<(u64, u64)> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
    };
    Some((word(0)?, word(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_every_mode() {
        let modes = [
            TcpMode::Echo { request_size: 1, response_size: 4096 },
            TcpMode::Sink,
            TcpMode::Source { nodelay: false },
            TcpMode::Source { nodelay: true },
        ];
        for mode in modes {
            assert_eq!(TcpMode::from_hello(&mode.hello()), Ok(mode));
        }
    }

    #[test]
    fn hello_layout_is_as_documented() {
        let hello = TcpMode::Echo { request_size: 0x0102_0304, response_size: 5 }.hello();
        assert_eq!(&hello[..4], b"NHB1");
        assert_eq!(hello[4], 1);
        assert_eq!(&hello[5..8], &[0, 0, 0]);
        assert_eq!(TcpMode::Source { nodelay: true }.hello()[5], 1);
        assert_eq!(&hello[8..12], &[1, 2, 3, 4]);
        assert_eq!(&hello[12..16], &[0, 0, 0, 5]);
    }

    #[test]
    fn bad_hellos_are_rejected() {
        let mut hello = TcpMode::Sink.hello();
        hello[4] = 9;
        assert_eq!(TcpMode::from_hello(&hello), Err(HelloError::UnknownMode(9)));
        assert_eq!(TcpMode::from_hello(b"GET / HTTP/1.1\r\n"), Err(HelloError::BadMagic));
        let zero = TcpMode::Echo { request_size: 0, response_size: 1 }.hello();
        assert_eq!(TcpMode::from_hello(&zero), Err(HelloError::BadSize(0)));
        let huge = TcpMode::Echo { request_size: 1, response_size: MAX_MESSAGE + 1 }.hello();
        assert_eq!(TcpMode::from_hello(&huge), Err(HelloError::BadSize(MAX_MESSAGE + 1)));
    }

    #[test]
    fn filler_is_deterministic_and_not_zero() {
        let a = filler(8192);
        assert_eq!(a, filler(8192));
        assert!(a.iter().filter(|&&b| b == 0).count() < 100);
        // Every 4 KiB page differs from the first one.
        assert_ne!(a[..4096], a[4096..]);
    }

    #[test]
    fn sequence_numbers_round_trip() {
        let mut buf = [0u8; 20];
        put_seq(&mut buf, 0xdead_beef_0000_0001, 42);
        assert_eq!(get_seq(&buf), Some((0xdead_beef_0000_0001, 42)));
        assert_eq!(get_seq(&buf[..15]), None);
    }
}
