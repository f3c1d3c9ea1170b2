//! One client TCP connection of the request/response load generator, and the
//! per-thread meter it reports into.
//!
//! A connection tracks its requests k = 0, 1, 2, … by counters: how many
//! are due (open loop: computed from the schedule and the clock whenever it
//! is needed; closed loop: one more than answered), `sent` (handed to the
//! kernel) and `answered`. Responses arrive in order, so the
//! k-th response answers request k and its latency origin is known without
//! storing much per-request state: the intended time comes from the
//! schedule, the send time from a queue of the in-flight requests' send
//! times (at most `--pipeline` long).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use super::LoadSpec;
use crate::hist::LatencyHistogram;
use crate::http::{HttpError, ResponseFramer};
use crate::report::Counts;
use crate::run::Window;
use crate::schedule::Schedule;
use crate::timeline::SecondRecorder;

/// Why a connection stopped working.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server announced `Connection: close` and we read its last
    /// response: not an error, just reconnect.
    ServerClose,
    /// The server closed or reset the connection.
    Io,
    /// The server sent something that is not a valid response.
    Protocol,
}

impl From<HttpError> for Failure {
    fn from(_: HttpError) -> Self {
        Failure::Protocol
    }
}

/// How responses are delimited on this connection.
pub(super) enum Framer {
    Echo { size: u64, partial: u64 },
    Http(ResponseFramer),
}

impl Framer {
    /// Feeds bytes; returns (responses completed, of which failed, server closes).
    fn feed(&mut self, data: &[u8]) -> Result<(u32, u32, bool), Failure> {
        match self {
            Framer::Echo { size, partial } => {
                let total = *partial + data.len() as u64;
                *partial = total % *size;
                Ok(((total / *size) as u32, 0, false))
            }
            Framer::Http(f) => {
                let framed = f.feed(data)?;
                Ok((framed.complete, framed.failed, framed.close))
            }
        }
    }

    fn reset(&mut self) {
        match self {
            Framer::Echo { partial, .. } => *partial = 0,
            Framer::Http(f) => f.reset(),
        }
    }
}

/// Everything a thread measures, shared by its connections.
pub(super) struct Meter {
    pub(super) spec: Arc<LoadSpec>,
    /// `pipeline` copies of the request, so any number of in-flight
    /// requests is one contiguous suffix of this buffer.
    pub(super) repeated: Vec<u8>,
    pub(super) schedule: Option<Schedule>,
    pub(super) window: Window,
    pub(super) hist: LatencyHistogram,
    /// Open loop only: latency from the actual send, what a closed-loop
    /// tool would have measured for the same requests.
    pub(super) from_send: LatencyHistogram,
    pub(super) send_lag: LatencyHistogram,
    pub(super) recorder: SecondRecorder,
    pub(super) counts: Counts,
}

impl Meter {
    pub(super) fn error(&mut self, now: u64) {
        if self.window.contains(now) {
            self.counts.errors += 1;
        }
        self.recorder.error(now);
    }
}

pub(super) struct ClientConn {
    /// Global connection index (its slot in the schedule).
    pub(super) id: u32,
    pub(super) stream: Option<TcpStream>,
    pub(super) framer: Framer,
    /// Closed loop only: requests released so far.
    pub(super) due: u64,
    pub(super) sent: u64,
    pub(super) answered: u64,
    /// Bytes of sent requests not yet accepted by the kernel.
    out_pending: usize,
    /// When each request in flight was handed to the socket, oldest first.
    send_times: VecDeque<u64>,
    /// While disconnected: when to try again.
    pub(super) retry_at_ns: u64,
}

impl ClientConn {
    pub(super) fn new(id: u32, stream: TcpStream, framer: Framer) -> Self {
        let send_times = VecDeque::new();
        ClientConn {
            id,
            stream: Some(stream),
            framer,
            due: 0,
            sent: 0,
            answered: 0,
            out_pending: 0,
            send_times,
            retry_at_ns: 0,
        }
    }

    /// Latency origin of in-flight request `k`: its intended time (open
    /// loop) or its send time (closed loop).
    fn origin(&self, m: &Meter, k: u64) -> u64 {
        match &m.schedule {
            Some(s) => s.intended_ns(self.id, k),
            None => self.send_times[(k - self.answered) as usize],
        }
    }

    pub(super) fn in_flight(&self) -> u64 {
        self.sent - self.answered
    }

    /// Connected, with room for another request, and nothing queued before
    /// its request `k`: it would write request `k` the moment it is due.
    pub(super) fn is_idle_before(&self, k: u64, pipeline: u32) -> bool {
        self.stream.is_some() && self.sent >= k && self.in_flight() < u64::from(pipeline)
    }

    /// Connected and with room for another request.
    pub(super) fn has_room(&self, pipeline: u32) -> bool {
        self.stream.is_some() && self.in_flight() < u64::from(pipeline)
    }

    /// How many requests are due by `now`.
    fn due(&self, m: &Meter, now: u64) -> u64 {
        match &m.schedule {
            // Intended at or before now, and before the end of the window.
            Some(s) => {
                s.conn_scheduled_before(self.id, (now + 1).min(m.window.end_ns) - m.window.start_ns)
            }
            None => self.due,
        }
    }

    /// Sends what is due and allowed by the pipeline limit, then writes.
    pub(super) fn pump(&mut self, m: &mut Meter, now: u64) -> Result<(), Failure> {
        if self.stream.is_none() {
            return Ok(());
        }
        let room = u64::from(m.spec.pipeline).saturating_sub(self.in_flight());
        // Nothing new is written after the end: requests still queued then
        // are reported as unsent, and the drain only waits for replies.
        let room = if now < m.window.end_ns { room } else { 0 };
        let count = self.due(m, now).saturating_sub(self.sent).min(room);
        for k in self.sent..self.sent + count {
            self.send_times.push_back(now);
            let origin = self.origin(m, k);
            if m.window.contains(origin) {
                m.counts.requests_sent += 1;
                if m.schedule.is_some() {
                    m.send_lag.record(now.saturating_sub(origin));
                }
            }
        }
        self.sent += count;
        self.out_pending += count as usize * m.spec.request.len();
        self.flush(m, now)
    }

    /// Writes pending request bytes until done or the socket is full.
    pub(super) fn flush(&mut self, m: &mut Meter, now: u64) -> Result<(), Failure> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        while self.out_pending > 0 {
            let from = m.repeated.len() - self.out_pending;
            match stream.write(&m.repeated[from..]) {
                Ok(n) => {
                    self.out_pending -= n;
                    if m.window.contains(now) {
                        m.counts.bytes_sent += n as u64;
                    }
                    m.recorder.bytes(now, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Io),
            }
        }
        Ok(())
    }

    /// Reads and accounts every response available.
    pub(super) fn receive(
        &mut self, m: &mut Meter, scratch: &mut [u8], now: u64, peer_closed: bool,
    ) -> Result<(), Failure> {
        loop {
            let Some(stream) = self.stream.as_mut() else { return Ok(()) };
            let n = match stream.read(scratch) {
                Ok(0) => return Err(Failure::Io),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Io),
            };
            if m.window.contains(now) {
                m.counts.bytes_received += n as u64;
            }
            m.recorder.bytes(now, n as u64);
            let (complete, failed, close) = self.framer.feed(&scratch[..n])?;
            for _ in 0..complete {
                self.answer(m, now)?;
            }
            for _ in 0..failed {
                m.error(now);
            }
            if close {
                return Err(Failure::ServerClose);
            }
            // A short read drained the socket; new data raises a new edge
            // (but a FIN that came with this data does not: read on).
            if n < scratch.len() && !peer_closed {
                return Ok(());
            }
        }
    }

    fn answer(&mut self, m: &mut Meter, now: u64) -> Result<(), Failure> {
        if self.answered >= self.sent {
            return Err(Failure::Protocol); // more responses than requests
        }
        let origin = self.origin(m, self.answered);
        let sent_at = self.send_times.pop_front().expect("one send time per request in flight");
        self.answered += 1;
        if m.window.contains(origin) {
            let latency = now.saturating_sub(origin);
            m.hist.record(latency);
            if m.schedule.is_some() {
                m.from_send.record(now.saturating_sub(sent_at));
            }
            m.counts.responses += 1;
            m.recorder.response(now, latency);
        }
        if m.schedule.is_none() && now < m.window.end_ns {
            self.due = self.answered + 1; // closed loop: the next one at once
        }
        Ok(())
    }

    /// Drops the socket; requests in flight will be sent again after the
    /// reconnect, keeping their intended times.
    pub(super) fn disconnect(&mut self, m: &mut Meter) -> Option<TcpStream> {
        for k in self.answered..self.sent {
            if m.window.contains(self.origin(m, k)) {
                m.counts.requests_sent -= 1;
            }
        }
        self.sent = self.answered;
        self.send_times.clear();
        self.out_pending = 0;
        self.framer.reset();
        self.stream.take()
    }
}
