//! The UDP echo: one blocking thread per server thread.
//!
//! A thread blocked in `recvfrom` is woken straight from the socket's wait
//! queue, the way sockperf's server waits. Going through epoll instead costs
//! a wake-up of the poller plus a second `recvfrom` that only returns
//! EAGAIN (edge-triggered readiness must be drained), which on a VM showed
//! as several microseconds per round trip.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::error::BenchError;
use crate::proto::MAX_DATAGRAM;

/// How often a blocked thread checks whether the server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(200);

pub(super) struct UdpEcho {
    sock: UdpSocket,
    shared: Arc<Shared>,
}

impl UdpEcho {
    pub(super) fn new(sock: UdpSocket, shared: Arc<Shared>) -> Result<Self, BenchError> {
        let setup = |e| BenchError::io("setting up the UDP echo socket", e);
        sock.set_nonblocking(false).map_err(setup)?;
        sock.set_read_timeout(Some(STOP_CHECK)).map_err(setup)?;
        Ok(UdpEcho { sock, shared })
    }

    /// Echoes datagrams until the server stops.
    pub(super) fn run(self) -> Result<(), BenchError> {
        let mut buf = vec![0u8; MAX_DATAGRAM as usize];
        while !self.shared.stop.load(Ordering::Relaxed) {
            // Errors are the timeout (time to check the stop flag), EINTR, or
            // an ICMP error queued by an earlier send to a client that left.
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                // A full send buffer drops the echo, like any UDP loss.
                if self.sock.send_to(&buf[..n], from).is_ok() {
                    self.shared.datagrams.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}
