//! Paced UDP load: datagrams leave on the fixed schedule whatever comes
//! back; echoes are accounted as they arrive (see the parent module).

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use super::{Tally, UdpConfig, UdpOutput};
use crate::clock::{now_ns, sleep_until, until, Pacer};
use crate::error::BenchError;
use crate::hist::LatencyHistogram;
use crate::proto::{put_seq, MAX_DATAGRAM};
use crate::schedule::{LocalCursor, Schedule};

const PACER: Token = Token(usize::MAX);
/// Datagrams sent at most before the echoes are read again. A rate above what
/// the path carries (a packet-rate test) keeps the schedule always behind;
/// without this bound the sender would write for the whole window and the
/// echoes would overflow the socket's receive queue unread.
const SEND_BURST: usize = 64;

fn io_err(what: &str, e: io::Error) -> BenchError {
    BenchError::io(what.to_string(), e)
}

/// One thread of paced load over its sockets.
pub(super) struct Paced {
    poll: Poll,
    socks: Vec<mio::net::UdpSocket>,
    pacer: Pacer,
    schedule: Schedule,
    cursor: LocalCursor,
    buf: Vec<u8>,
    send_lag: LatencyHistogram,
    drain_deadline: u64,
    tally: Tally,
}

impl Paced {
    pub(super) fn new(
        sockets: Vec<UdpSocket>, ids: Vec<u32>, rate: f64, config: &UdpConfig, mut tally: Tally,
    ) -> Result<Self, BenchError> {
        let poll = Poll::new().map_err(|e| io_err("creating a poll", e))?;
        let mut socks = Vec::new();
        for (local, s) in sockets.into_iter().enumerate() {
            s.set_nonblocking(true).map_err(|e| io_err("configuring a UDP socket", e))?;
            let mut s = mio::net::UdpSocket::from_std(s);
            poll.registry()
                .register(&mut s, Token(local), Interest::READABLE)
                .map_err(|e| io_err("registering a socket", e))?;
            socks.push(s);
        }
        let share = ids.len() as f64 / f64::from(config.common.connections.max(1));
        let pacer = Pacer::new((1e9 / (rate * share)) as u64)
            .map_err(|e| io_err("creating a timerfd", e))?;
        pacer.register(poll.registry(), PACER).map_err(|e| io_err("registering a timerfd", e))?;
        let w = tally.window;
        let schedule = Schedule::new(w.start_ns, rate, config.common.connections);
        let (from, to) = (w.measure_ns - w.start_ns, w.end_ns - w.start_ns);
        tally.out.scheduled = ids
            .iter()
            .map(|&c| {
                schedule.conn_scheduled_before(c, to) - schedule.conn_scheduled_before(c, from)
            })
            .sum();
        tally.schedule = Some((schedule, ids.clone()));
        Ok(Paced {
            poll,
            socks,
            pacer,
            schedule,
            cursor: LocalCursor::new(ids),
            buf: vec![0u8; config.size as usize],
            send_lag: LatencyHistogram::new(),
            drain_deadline: w.end_ns + config.common.timeout().as_nanos() as u64,
            tally,
        })
    }

    pub(super) fn run(mut self) -> Result<UdpOutput, BenchError> {
        let mut events = Events::with_capacity(256);
        let mut rbuf = vec![0u8; MAX_DATAGRAM as usize];
        let end = self.tally.window.end_ns;
        sleep_until(self.tally.window.start_ns);
        loop {
            let now = now_ns();
            let deadline = if now < end {
                self.send_due(now);
                self.next_wake(now)?
            } else if now >= self.drain_deadline || self.tally.out.received >= self.tally.out.sent {
                break;
            } else {
                self.drain_deadline
            };
            match self
                .poll
                .poll(&mut events, Some(until(deadline, now, Duration::from_millis(100))))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("waiting for UDP events", e)),
            }
            for event in events.iter() {
                if event.token() == PACER {
                    self.pacer.fired(now_ns());
                    continue;
                }
                let local = event.token().0;
                receive_all(&self.socks[local], local, &mut rbuf, &mut self.tally);
            }
        }
        let mut out = self.tally.finish();
        out.send_lag = Some(self.send_lag);
        Ok(out)
    }

    /// Sends the datagrams whose intended time has come, at most
    /// [`SEND_BURST`] of them (the rest on the next turn, right after the
    /// echoes that arrived meanwhile are read).
    fn send_due(&mut self, now: u64) {
        let w = self.tally.window;
        for _ in 0..SEND_BURST {
            let slot = self.cursor.peek(&self.schedule);
            if slot.intended_ns > now || slot.intended_ns >= w.end_ns {
                return;
            }
            // The datagram carries its actual send time; the intended time
            // follows from its sequence number and the schedule.
            put_seq(&mut self.buf, slot.k, now);
            // A full socket buffer drops the datagram: it counts as sent and lost.
            if let Err(e) = self.socks[slot.local].send(&self.buf) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.tally.error(now); // e.g. ICMP port unreachable: the server went away
                }
            }
            self.tally.sent(slot.intended_ns, now, self.buf.len());
            if w.contains(slot.intended_ns) {
                self.send_lag.record(now - slot.intended_ns);
            }
            self.cursor.advance();
        }
    }

    /// When to stop polling: the end of the window, or now (spin) when the
    /// next datagram is due within the pacer's lead.
    fn next_wake(&mut self, now: u64) -> Result<u64, BenchError> {
        let end = self.tally.window.end_ns;
        let next = self.cursor.peek(&self.schedule).intended_ns;
        if next < end
            && self.pacer.wait_for(next, now).map_err(|e| io_err("arming the timerfd", e))?
        {
            return Ok(now);
        }
        Ok(end)
    }
}

/// Reads every queued echo of one socket.
fn receive_all(sock: &mio::net::UdpSocket, local: usize, rbuf: &mut [u8], tally: &mut Tally) {
    // Each queued ICMP error is reported once; the bound only guards against
    // a socket that keeps failing.
    let mut errors = 0;
    while errors < 16 {
        match sock.recv(rbuf) {
            Ok(n) => {
                let now = now_ns();
                tally.echo(local, &rbuf[..n], now);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                tally.error(now_ns());
                errors += 1;
            }
        }
    }
}
