//! Closed loop with one connection per thread — the usual `rr` — as a plain
//! blocking write/read loop, like netperf's TCP_RR and sockperf's
//! ping-pong. Without a poll between the write and the read, the thread is
//! woken straight from the socket when the response arrives, which is the
//! cheapest way to wait for one response and the same path the reference
//! tools measure.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use super::{LoadOutput, LoadSpec, ResponseKind};
use crate::clock::{now_ns, sleep_until};
use crate::error::BenchError;
use crate::hist::LatencyHistogram;
use crate::report::Counts;
use crate::run::{Window, WorkerCtx};
use crate::timeline::SecondRecorder;

use super::RETRY_NS;

/// Runs one thread's single connection in closed loop.
pub(super) fn run_thread(spec: Arc<LoadSpec>, ctx: WorkerCtx) -> Result<LoadOutput, BenchError> {
    let setup = connect(&spec);
    let (stream, window, recorder) = ctx.ready(setup)?;
    let mut run = Blocking {
        spec,
        stream: Some(stream),
        window,
        recorder,
        hist: LatencyHistogram::new(),
        counts: Counts::default(),
        buf: vec![0; 64 * 1024],
    };
    sleep_until(window.start_ns);
    while now_ns() < window.end_ns {
        run.transaction();
    }
    let mut counts = run.counts;
    counts.timeouts = counts.requests_sent.saturating_sub(counts.responses);
    run.recorder.finish();
    Ok(LoadOutput {
        hist: run.hist,
        from_send: LatencyHistogram::new(),
        send_lag: LatencyHistogram::new(),
        counts,
        scheduled: 0,
    })
}

/// A connected, blocking socket whose reads and writes give up after the timeout.
fn connect(spec: &LoadSpec) -> Result<TcpStream, BenchError> {
    let stream = spec.connect()?;
    let set = |r: io::Result<()>| r.map_err(|e| BenchError::io("configuring a socket", e));
    set(stream.set_nonblocking(false))?;
    set(stream.set_read_timeout(Some(spec.timeout)))?;
    set(stream.set_write_timeout(Some(spec.timeout)))?;
    Ok(stream)
}

struct Blocking {
    spec: Arc<LoadSpec>,
    stream: Option<TcpStream>,
    window: Window,
    recorder: SecondRecorder,
    hist: LatencyHistogram,
    counts: Counts,
    buf: Vec<u8>,
}

impl Blocking {
    /// One request and its response; a failure is counted and the
    /// connection re-established (bounded by the timeout).
    fn transaction(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            self.reconnect();
            return;
        };
        let sent_at = now_ns();
        let in_window = self.window.contains(sent_at);
        if stream.write_all(&self.spec.request).is_err() {
            return self.fail(sent_at);
        }
        let size = match self.spec.response {
            ResponseKind::Echo { size } => size as usize,
            ResponseKind::Http => unreachable!("rr speaks the echo protocol"),
        };
        if in_window {
            self.counts.requests_sent += 1;
            self.counts.bytes_sent += self.spec.request.len() as u64;
        }
        let mut got = 0;
        while got < size {
            let want = (size - got).min(self.buf.len());
            match stream.read(&mut self.buf[..want]) {
                Ok(0) => return self.fail(now_ns()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Includes the timeout: the response is late or lost.
                Err(_) => return self.fail(now_ns()),
            }
        }
        let now = now_ns();
        self.recorder.bytes(now, (self.spec.request.len() + size) as u64);
        if in_window {
            let latency = now - sent_at;
            self.hist.record(latency);
            self.counts.responses += 1;
            self.counts.bytes_received += size as u64;
            self.recorder.response(now, latency);
        }
    }

    fn fail(&mut self, now: u64) {
        if self.window.contains(now) {
            self.counts.errors += 1;
        }
        self.recorder.error(now);
        self.stream = None;
    }

    fn reconnect(&mut self) {
        match connect(&self.spec) {
            Ok(stream) => {
                self.stream = Some(stream);
                self.counts.reconnects += 1;
            }
            Err(_) => {
                let now = now_ns();
                self.fail(now);
                sleep_until((now + RETRY_NS).min(self.window.end_ns));
            }
        }
    }
}
