//! `stream`: TCP bulk throughput with per-second intervals (iperf3
//! semantics), client → server by default, server → client with
//! `--reverse`. Each connection runs on its own thread with blocking
//! sockets: throughput, not latency, is measured, and blocking writes are
//! the cheapest way to keep the pipe full.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{now_ns, sleep_until};
use crate::common::{base_report, check_size, Common};
use crate::error::BenchError;
use crate::net;
use crate::proto::{TcpMode, MAX_MESSAGE};
use crate::report::{Counts, Direction, Mode, Report, Throughput};
use crate::run::{run_threads, WorkerCtx};

/// Most parallel streams.
pub const MAX_STREAMS: u32 = 128;
/// How often a blocked write or read comes back to check the clock.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// `--window` bounds, bytes: below 1 KiB TCP barely moves; 256 MiB is far
/// above any bandwidth-delay product a container path has.
const MIN_WINDOW: u32 = 1024;
const MAX_WINDOW: u32 = 256 << 20;

/// Settings of a `stream` run.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// A `nearhost bench serve` address.
    pub target: SocketAddr,
    /// `connections` = parallel streams (one thread each).
    pub common: Common,
    /// Server → client instead of client → server.
    pub reverse: bool,
    /// Bytes per write (or read) call.
    pub write_size: u32,
    /// Send with TCP_NODELAY (iperf3 -N). Off by default, like iperf3: with
    /// it, every write is pushed at once, which changes how the sender
    /// batches segments and so the throughput.
    pub nodelay: bool,
    /// SO_SNDBUF and SO_RCVBUF of every connection (iperf3 -w), bytes; `None`
    /// leaves the kernel's autotuning alone.
    pub window: Option<u32>,
}

impl StreamConfig {
    /// Defaults: 1 stream, client → server, 128 KiB writes, 10 s.
    pub fn new(target: SocketAddr) -> Self {
        StreamConfig {
            target,
            common: Common::default(),
            reverse: false,
            write_size: 128 * 1024,
            nodelay: false,
            window: None,
        }
    }
}

#[derive(Default)]
struct StreamOutput {
    client_bytes: u64,
    retransmits: Option<u64>,
    receiver_bytes: u64,
    /// Load start until the receiver had everything, ns.
    receiver_ns: u64,
    errors: u64,
}

/// Runs a throughput measurement.
pub fn stream(config: &StreamConfig) -> Result<Report, BenchError> {
    let common = &config.common;
    common.validate()?;
    check_size("--write-size", config.write_size, 1, MAX_MESSAGE)?;
    if let Some(w) = config.window {
        check_size("--window", w, MIN_WINDOW, MAX_WINDOW)?;
    }
    if common.connections > MAX_STREAMS {
        return Err(BenchError::invalid(
            "--connections",
            common.connections,
            format!("stream allows at most {MAX_STREAMS}"),
        ));
    }
    let threads = common.connections as usize;
    let plan = common.plan(threads, "stream");
    let shared = Arc::new(config.clone());
    let (outputs, timeline) = run_threads(&plan, move |ctx| stream_thread(&shared, ctx))?;
    let mut total = StreamOutput::default();
    for o in &outputs {
        total.client_bytes += o.client_bytes;
        total.receiver_bytes += o.receiver_bytes;
        total.receiver_ns = total.receiver_ns.max(o.receiver_ns);
        total.errors += o.errors;
        if let Some(r) = o.retransmits {
            *total.retransmits.get_or_insert(0) += r;
        }
    }
    let mut settings = common.settings("stream", threads);
    settings.request_size = config.write_size;
    settings.window_bytes = config.window;
    let counts = Counts {
        errors: total.errors,
        bytes_sent: if config.reverse { 0 } else { total.client_bytes },
        bytes_received: if config.reverse { total.client_bytes } else { 0 },
        ..Counts::default()
    };
    let mut report =
        base_report(Mode::Stream, config.target.to_string(), settings, counts, timeline);
    let client_bits = total.client_bytes as f64 * 8.0 / common.duration_s;
    let (receiver_bytes, receiver_bits) = if config.reverse {
        (Some(total.client_bytes), Some(client_bits))
    } else if total.receiver_ns > 0 {
        (
            Some(total.receiver_bytes),
            Some(total.receiver_bytes as f64 * 8.0 / (total.receiver_ns as f64 / 1e9)),
        )
    } else {
        (None, None)
    };
    report.throughput = Some(Throughput {
        direction: if config.reverse {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        },
        client_bytes: total.client_bytes,
        client_bits_per_s: client_bits,
        receiver_bytes,
        receiver_bits_per_s: receiver_bits,
        retransmits: total.retransmits,
    });
    Ok(report)
}

fn stream_thread(config: &StreamConfig, ctx: WorkerCtx) -> Result<StreamOutput, BenchError> {
    let mode =
        if config.reverse { TcpMode::Source { nodelay: config.nodelay } } else { TcpMode::Sink };
    let timeout = config.common.timeout();
    let setup = net::connect_bench(config.target, mode, timeout).and_then(|s| {
        let set = |r: io::Result<()>| r.map_err(|e| BenchError::io("setting a socket timeout", e));
        set(s.set_write_timeout(Some(CHECK_EVERY)))?;
        set(s.set_nodelay(config.nodelay))?;
        set(s.set_read_timeout(Some(CHECK_EVERY)))?;
        if let Some(w) = config.window {
            set_window(&s, w)?;
        }
        Ok(s)
    });
    let (mut sock, window, mut recorder) = ctx.ready(setup)?;
    let mut buf = crate::proto::filler(config.write_size as usize);
    let mut out = StreamOutput::default();
    sleep_until(window.start_ns);
    while now_ns() < window.end_ns {
        let result = if config.reverse { sock.read(&mut buf) } else { sock.write(&buf) };
        let now = now_ns();
        match result {
            Ok(0) => {
                recorder.error(now);
                out.errors += 1;
                break; // the server closed
            }
            Ok(n) => {
                if window.contains(now) {
                    out.client_bytes += n as u64;
                }
                recorder.bytes(now, n as u64);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                recorder.error(now);
                out.errors += 1;
                break;
            }
        }
    }
    recorder.finish();
    if !config.reverse {
        out.retransmits = total_retransmits(&sock);
    }
    if !config.reverse && out.errors == 0 {
        match receiver_count(&mut sock, timeout) {
            Some(bytes) => {
                out.receiver_bytes = bytes;
                out.receiver_ns = now_ns() - window.start_ns;
            }
            None => out.errors += 1,
        }
    }
    Ok(out)
}

/// Bounds the connection's window like iperf3 -w: both socket buffers set
/// (which also turns the kernel's buffer autotuning off for this socket).
/// Set after the connection is up, before any data: the window scale was
/// negotiated from the system's maximum, so the smaller buffer is what limits
/// the bytes in flight.
fn set_window(sock: &TcpStream, bytes: u32) -> Result<(), BenchError> {
    use nix::sys::socket::{setsockopt, sockopt};
    let size = bytes as usize;
    setsockopt(sock, sockopt::SndBuf, &size)
        .and_then(|()| setsockopt(sock, sockopt::RcvBuf, &size))
        .map_err(|e| BenchError::io("setting the socket buffers (--window)", e.into()))
}

/// Segments the kernel retransmitted on this socket so far (TCP_INFO).
fn total_retransmits(sock: &TcpStream) -> Option<u64> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable and `len` holds its size; the kernel writes
    // at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(u64::from(info.tcpi_total_retrans))
}

/// Asks the sink for its byte count: half-close, then read the u64 it sends.
fn receiver_count(sock: &mut TcpStream, timeout: Duration) -> Option<u64> {
    sock.shutdown(Shutdown::Write).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut word = [0u8; 8];
    sock.read_exact(&mut word).ok()?;
    Some(u64::from_be_bytes(word))
}
