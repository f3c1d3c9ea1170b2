//! The request/response load generator behind `rr` (closed loop) and `rate` (open
//! loop): one mio poll per thread over that thread's connections.
//!
//! Open loop: a cursor walks the thread's share of the fixed schedule; each
//! request whose intended time has come is released to its connection,
//! which sends it as soon as its pipeline allows. A `timerfd` wakes the
//! thread at the next intended time. Latency is measured from the intended
//! time, so time spent queued behind a stalled connection counts.
//!
//! Closed loop: each connection sends its next request as soon as the
//! previous response is complete; latency is measured from the send. With
//! one connection per thread, the closed loop uses plain blocking I/O
//! instead (see [`blocking`]).

mod blocking;
mod conn;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::clock::{now_ns, until, Pacer};
use crate::error::BenchError;
use crate::hist::LatencyHistogram;
use crate::http::ResponseFramer;
use crate::net;
use crate::proto::TcpMode;
use crate::report::{Counts, Interval};
use crate::run::{run_threads, Plan, WorkerCtx};
use crate::schedule::{LocalCursor, Schedule};
use conn::{ClientConn, Failure, Framer, Meter};

const PACER: Token = Token(usize::MAX);
/// Wait between reconnect attempts of a failed connection.
pub(super) const RETRY_NS: u64 = 100_000_000;
/// Upper bound of one poll wait, so a lost wake-up can never hang a run.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// How responses are framed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResponseKind {
    Echo { size: u32 },
    Http,
}

/// What every load-generator thread does (immutable, shared).
#[derive(Debug)]
pub(crate) struct LoadSpec {
    pub(crate) target: SocketAddr,
    /// Bench hello to send after connecting; `None` for HTTP.
    pub(crate) hello: Option<TcpMode>,
    pub(crate) request: Vec<u8>,
    pub(crate) response: ResponseKind,
    pub(crate) pipeline: u32,
    pub(crate) connections: u32,
    pub(crate) threads: usize,
    pub(crate) timeout: Duration,
    /// `Some(rate)`: open loop at that many requests per second.
    pub(crate) rate_per_s: Option<f64>,
}

/// One thread's results.
pub(crate) struct LoadOutput {
    pub(crate) hist: LatencyHistogram,
    pub(crate) from_send: LatencyHistogram,
    pub(crate) send_lag: LatencyHistogram,
    pub(crate) counts: Counts,
    /// Open loop: requests this thread's schedule intended in the window.
    pub(crate) scheduled: u64,
}

impl LoadSpec {
    fn connect(&self) -> Result<std::net::TcpStream, BenchError> {
        let stream = match self.hello {
            Some(mode) => net::connect_bench(self.target, mode, self.timeout)?,
            None => net::connect(self.target, self.timeout)?,
        };
        stream
            .set_nonblocking(true)
            .map_err(|e| BenchError::io("making a socket non-blocking", e))?;
        Ok(stream)
    }

    fn framer(&self) -> Framer {
        match self.response {
            ResponseKind::Echo { size } => Framer::Echo { size: u64::from(size), partial: 0 },
            ResponseKind::Http => Framer::Http(ResponseFramer::default()),
        }
    }

    /// Global indices of the connections thread `index` owns.
    fn conn_ids(&self, index: usize) -> Vec<u32> {
        (0..self.connections).filter(|c| *c as usize % self.threads == index).collect()
    }
}

/// Runs the load generator on `plan.threads` threads and merges their results.
pub(crate) fn run(spec: LoadSpec, plan: &Plan) -> Result<(LoadOutput, Vec<Interval>), BenchError> {
    let spec = Arc::new(spec);
    let one_each = spec.rate_per_s.is_none() && spec.connections as usize == spec.threads;
    let (outputs, timeline) = run_threads(plan, move |ctx| match one_each {
        true => blocking::run_thread(Arc::clone(&spec), ctx),
        false => run_thread(Arc::clone(&spec), ctx),
    })?;
    let mut total = LoadOutput {
        hist: LatencyHistogram::new(),
        from_send: LatencyHistogram::new(),
        send_lag: LatencyHistogram::new(),
        counts: Counts::default(),
        scheduled: 0,
    };
    for out in outputs {
        total.hist.merge(&out.hist);
        total.from_send.merge(&out.from_send);
        total.send_lag.merge(&out.send_lag);
        total.counts += out.counts;
        total.scheduled += out.scheduled;
    }
    Ok((total, timeline))
}

/// Runs one load-generator thread: connect, wait for the start, load, drain.
fn run_thread(spec: Arc<LoadSpec>, ctx: WorkerCtx) -> Result<LoadOutput, BenchError> {
    let ids = spec.conn_ids(ctx.index);
    let setup = (|| {
        let poll = Poll::new().map_err(|e| BenchError::io("creating a poll", e))?;
        let mut conns = Vec::with_capacity(ids.len());
        for (local, &id) in ids.iter().enumerate() {
            let mut stream = TcpStream::from_std(spec.connect()?);
            register(&poll, &mut stream, local)
                .map_err(|e| BenchError::io("registering a socket", e))?;
            conns.push(ClientConn::new(id, stream, spec.framer()));
        }
        // This thread sends `rate / threads` requests per second.
        let interval_ns =
            spec.rate_per_s.map_or(u64::MAX, |r| (1e9 * spec.threads as f64 / r) as u64);
        let pacer = Pacer::new(interval_ns).map_err(|e| BenchError::io("creating a timerfd", e))?;
        pacer
            .register(poll.registry(), PACER)
            .map_err(|e| BenchError::io("registering a timerfd", e))?;
        Ok((poll, conns, pacer))
    })();
    let ((poll, conns, pacer), window, recorder) = ctx.ready(setup)?;
    let schedule =
        spec.rate_per_s.map(|rate| Schedule::new(window.start_ns, rate, spec.connections));
    let meter = Meter {
        repeated: spec.request.repeat(spec.pipeline as usize),
        spec: Arc::clone(&spec),
        schedule,
        window,
        hist: LatencyHistogram::new(),
        from_send: LatencyHistogram::new(),
        send_lag: LatencyHistogram::new(),
        recorder,
        counts: Counts::default(),
    };
    let mut worker = Worker {
        poll,
        conns,
        pacer,
        cursor: LocalCursor::new(ids),
        meter,
        down: Vec::new(),
        touched: Vec::new(),
    };
    worker.run()?;
    Ok(worker.finish())
}

fn register(poll: &Poll, stream: &mut TcpStream, local: usize) -> io::Result<()> {
    poll.registry().register(stream, Token(local), Interest::READABLE | Interest::WRITABLE)
}

struct Worker {
    poll: Poll,
    conns: Vec<ClientConn>,
    pacer: Pacer,
    cursor: LocalCursor,
    meter: Meter,
    /// Local indices of disconnected connections.
    down: Vec<usize>,
    /// Scratch list of connections that got newly due requests.
    touched: Vec<usize>,
}

impl Worker {
    fn run(&mut self) -> Result<(), BenchError> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        let end = self.meter.window.end_ns;
        let drain_deadline = end + self.meter.spec.timeout.as_nanos() as u64;
        crate::clock::sleep_until(self.meter.window.start_ns);
        if self.meter.schedule.is_none() {
            for conn in &mut self.conns {
                conn.due = 1;
            }
            self.touched.extend(0..self.conns.len());
        }
        loop {
            let now = now_ns();
            if now < end {
                self.release_due(now);
            } else if now >= drain_deadline
                || self.conns.iter().all(|c| c.in_flight() == 0 || c.stream.is_none())
            {
                return Ok(());
            }
            self.retry_down(now);
            let wait = self.next_wait(now, end, drain_deadline)?;
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::io("waiting for socket events", e)),
            }
            let now = now_ns();
            for event in events.iter() {
                if event.token() == PACER {
                    self.pacer.fired(now);
                    continue;
                }
                let local = event.token().0;
                let Some(conn) = self.conns.get_mut(local) else { continue };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(failure) =
                        conn.receive(&mut self.meter, &mut scratch, now, event.is_read_closed())
                    {
                        self.fail(local, failure, now);
                        continue;
                    }
                }
                // Writable, or a response made room in the pipeline.
                self.touched.push(local);
            }
            // Write only after every ready socket was read: the requests of
            // one batch then reach the server together and wake it once,
            // which on a VM (where each wake-up is an interrupt) is worth more
            // than the microsecond the first of them waits.
            self.pump_touched(now);
        }
    }

    /// Open loop: hands every request whose intended time has come to its
    /// connection. Closed loop: sends the first requests.
    fn release_due(&mut self, now: u64) {
        if let Some(schedule) = self.meter.schedule {
            let w = self.meter.window;
            let released = self.cursor.released_by(&schedule, (now + 1).min(w.end_ns) - w.start_ns);
            let pipeline = self.meter.spec.pipeline;
            if released > self.cursor.position() + self.conns.len() as u64 {
                // More than a whole round came due at once (a target rate
                // above what the path sustains): every connection has work,
                // and those with room are the only ones that can write.
                self.touched
                    .extend((0..self.conns.len()).filter(|&l| self.conns[l].has_room(pipeline)));
            } else {
                while self.cursor.position() < released {
                    self.touched.push(self.cursor.peek(&schedule).local);
                    self.cursor.advance();
                }
            }
            self.cursor.jump_to(released);
        }
        self.pump_touched(now);
    }

    /// Lets every connection in `touched` write what it may.
    fn pump_touched(&mut self, now: u64) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &local in &touched {
            if let Err(failure) = self.conns[local].pump(&mut self.meter, now) {
                self.fail(local, failure, now);
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// How long to poll: until the next intended send (via the timerfd),
    /// the end of the run, the drain deadline or a reconnect, whichever first.
    fn next_wait(
        &mut self, now: u64, end: u64, drain_deadline: u64,
    ) -> Result<Duration, BenchError> {
        let mut deadline = if now < end { end } else { drain_deadline };
        if let (Some(next), true) = (self.next_useful_slot(), now < end) {
            if self
                .pacer
                .wait_for(next, now)
                .map_err(|e| BenchError::io("arming the timerfd", e))?
            {
                return Ok(Duration::ZERO); // due or nearly: spin
            }
        }
        for &local in &self.down {
            deadline = deadline.min(self.conns[local].retry_at_ns);
        }
        Ok(until(deadline, now, MAX_WAIT))
    }

    /// Intended time of the next request that could be written the moment
    /// it is released: its connection is idle (nothing queued, room in the
    /// pipeline). Requests for busy connections go out when a response makes
    /// room, so waking up for them would only burn CPU; when every connection
    /// is busy (the target rate is above what the server sustains) there is
    /// nothing to wake for and the thread sleeps until a response arrives.
    fn next_useful_slot(&self) -> Option<u64> {
        let schedule = self.meter.schedule.as_ref()?;
        // The next `conns.len()` slots visit every connection once.
        for ahead in 0..self.conns.len() as u64 {
            let slot = self.cursor.peek_ahead(schedule, ahead);
            if slot.intended_ns >= self.meter.window.end_ns {
                return None;
            }
            if self.conns[slot.local].is_idle_before(slot.k, self.meter.spec.pipeline) {
                return Some(slot.intended_ns);
            }
        }
        None
    }

    fn fail(&mut self, local: usize, failure: Failure, now: u64) {
        match failure {
            Failure::ServerClose => {}
            Failure::Io | Failure::Protocol => self.meter.error(now),
        }
        let conn = &mut self.conns[local];
        if let Some(mut stream) = conn.disconnect(&mut self.meter) {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.retry_at_ns = now;
        if now < self.meter.window.end_ns && !self.down.contains(&local) {
            self.down.push(local);
        }
    }

    /// Reconnects failed connections whose retry time has come (blocking,
    /// bounded by the connect timeout).
    fn retry_down(&mut self, now: u64) {
        if now >= self.meter.window.end_ns {
            self.down.clear();
            return;
        }
        let mut i = 0;
        while i < self.down.len() {
            let local = self.down[i];
            if self.conns[local].retry_at_ns > now {
                i += 1;
                continue;
            }
            match self.meter.spec.connect() {
                Ok(stream) => {
                    let mut stream = TcpStream::from_std(stream);
                    if register(&self.poll, &mut stream, local).is_ok() {
                        let conn = &mut self.conns[local];
                        conn.stream = Some(stream);
                        self.meter.counts.reconnects += 1;
                        self.down.swap_remove(i);
                        self.touched.push(local);
                        continue;
                    }
                    self.meter.error(now);
                }
                Err(_) => self.meter.error(now),
            }
            self.conns[local].retry_at_ns = now + RETRY_NS;
            i += 1;
        }
    }

    fn finish(self) -> LoadOutput {
        let mut counts = self.meter.counts;
        counts.timeouts = counts.requests_sent.saturating_sub(counts.responses);
        let scheduled = match &self.meter.schedule {
            Some(s) => {
                let w = &self.meter.window;
                let (from, to) = (w.measure_ns - w.start_ns, w.end_ns - w.start_ns);
                self.conns
                    .iter()
                    .map(|c| {
                        s.conn_scheduled_before(c.id, to) - s.conn_scheduled_before(c.id, from)
                    })
                    .sum()
            }
            None => 0,
        };
        self.meter.recorder.finish();
        LoadOutput {
            hist: self.meter.hist,
            from_send: self.meter.from_send,
            send_lag: self.meter.send_lag,
            counts,
            scheduled,
        }
    }
}
