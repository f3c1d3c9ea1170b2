//! The per-second timeline.
//!
//! Each measurement thread accumulates the current second in a
//! [`SecondRecorder`] and hands every finished second to the collector over a
//! channel. The collector merges the threads' pieces of a second and, once
//! every thread has reported it, turns it into an [`Interval`] and drops the
//! histogram, so memory does not grow with the run length. Samples belong to
//! the second in which the response arrived.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use crate::hist::LatencyHistogram;
use crate::report::Interval;

const NS_PER_S: u64 = 1_000_000_000;

/// One thread's share of one second.
pub(crate) struct SecondPiece {
    second: u64,
    hist: LatencyHistogram,
    responses: u64,
    errors: u64,
    bytes: u64,
}

impl SecondPiece {
    fn new(second: u64) -> Self {
        SecondPiece {
            second,
            hist: LatencyHistogram::new_interval(),
            responses: 0,
            errors: 0,
            bytes: 0,
        }
    }

    fn absorb(&mut self, other: &SecondPiece) {
        self.hist.merge(&other.hist);
        self.responses += other.responses;
        self.errors += other.errors;
        self.bytes += other.bytes;
    }
}

/// A measurement thread's side: records into the current second.
pub(crate) struct SecondRecorder {
    start_ns: u64,
    end_ns: u64,
    current: SecondPiece,
    tx: Sender<SecondPiece>,
}

impl SecondRecorder {
    /// Records over the window `[start_ns, end_ns)`; events outside it are ignored.
    pub(crate) fn new(start_ns: u64, end_ns: u64, tx: Sender<SecondPiece>) -> Self {
        SecondRecorder { start_ns, end_ns, current: SecondPiece::new(0), tx }
    }

    /// The piece for the second containing `now_ns`, or `None` outside the window.
    fn piece(&mut self, now_ns: u64) -> Option<&mut SecondPiece> {
        if now_ns < self.start_ns || now_ns >= self.end_ns {
            return None;
        }
        self.advance_to((now_ns - self.start_ns) / NS_PER_S);
        Some(&mut self.current)
    }

    /// Sends every second before `second` (including empty ones: the
    /// collector waits for every thread's piece of every second).
    fn advance_to(&mut self, second: u64) {
        while self.current.second < second {
            let next = SecondPiece::new(self.current.second + 1);
            let done = std::mem::replace(&mut self.current, next);
            // The collector outlives the threads; if it is gone the run is
            // being torn down and the timeline no longer matters.
            let _ = self.tx.send(done);
        }
    }

    /// A completed request/response with its latency.
    pub(crate) fn response(&mut self, now_ns: u64, latency_ns: u64) {
        if let Some(p) = self.piece(now_ns) {
            p.responses += 1;
            p.hist.record(latency_ns);
        }
    }

    pub(crate) fn error(&mut self, now_ns: u64) {
        if let Some(p) = self.piece(now_ns) {
            p.errors += 1;
        }
    }

    pub(crate) fn bytes(&mut self, now_ns: u64, n: u64) {
        if let Some(p) = self.piece(now_ns) {
            p.bytes += n;
        }
    }

    /// Sends the remaining seconds of the window.
    pub(crate) fn finish(mut self) {
        let seconds = seconds_in(self.end_ns - self.start_ns);
        self.advance_to(seconds - 1);
        let _ = self.tx.send(self.current);
    }
}

/// Number of (possibly partial) seconds in a window of `len_ns`.
fn seconds_in(len_ns: u64) -> u64 {
    len_ns.div_ceil(NS_PER_S).max(1)
}

/// The collecting side: merges pieces into intervals.
pub(crate) struct TimelineCollector {
    rx: Receiver<SecondPiece>,
    threads: usize,
    window_ns: u64,
    pending: BTreeMap<u64, (SecondPiece, usize)>,
    done: Vec<Interval>,
}

impl TimelineCollector {
    pub(crate) fn new(rx: Receiver<SecondPiece>, threads: usize, window_ns: u64) -> Self {
        TimelineCollector { rx, threads, window_ns, pending: BTreeMap::new(), done: Vec::new() }
    }

    /// Waits up to `wait` for pieces; returns the intervals completed meanwhile.
    pub(crate) fn poll(&mut self, wait: Duration) -> &[Interval] {
        let before = self.done.len();
        match self.rx.recv_timeout(wait) {
            Ok(piece) => {
                self.add(piece);
                while let Ok(piece) = self.rx.try_recv() {
                    self.add(piece);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        &self.done[before..]
    }

    fn add(&mut self, piece: SecondPiece) {
        let second = piece.second;
        let entry = self.pending.entry(second).or_insert_with(|| (SecondPiece::new(second), 0));
        entry.0.absorb(&piece);
        entry.1 += 1;
        // Seconds complete in order because every thread sends them in order.
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().1 < self.threads {
                break;
            }
            let (piece, _) = entry.remove();
            let interval = self.interval(&piece);
            self.done.push(interval);
        }
    }

    fn interval(&self, piece: &SecondPiece) -> Interval {
        let start_s = piece.second as f64;
        let end_s = ((piece.second + 1) * NS_PER_S).min(self.window_ns) as f64 / NS_PER_S as f64;
        let len = (end_s - start_s).max(1e-9);
        let max = piece.hist.max_us();
        let latency = |q: f64| (!piece.hist.is_empty()).then(|| piece.hist.quantile_us(q).min(max));
        Interval {
            start_s,
            end_s,
            responses: piece.responses,
            errors: piece.errors,
            bytes: piece.bytes,
            per_s: piece.responses as f64 / len,
            bits_per_s: piece.bytes as f64 * 8.0 / len,
            p50_us: latency(0.5),
            p99_us: latency(0.99),
            max_us: (!piece.hist.is_empty()).then(|| piece.hist.max_us()),
        }
    }

    /// Collects everything still in flight (all senders must be finished or
    /// dropped) and returns the timeline.
    pub(crate) fn finish(mut self) -> Vec<Interval> {
        while let Ok(piece) = self.rx.recv() {
            self.add(piece);
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn merges_threads_per_second_and_covers_the_window() {
        let (tx, rx) = channel();
        let start = 5 * NS_PER_S;
        let window = 2_500_000_000; // 2.5 s: three intervals, the last one half long
        let collector = TimelineCollector::new(rx, 2, window);
        let mut a = SecondRecorder::new(start, start + window, tx.clone());
        let mut b = SecondRecorder::new(start, start + window, tx);
        a.response(start + 100, 10_000);
        b.response(start + 200, 30_000);
        // Thread b stalls through second 1 and reports again in second 2.
        a.response(start + NS_PER_S + 5, 20_000);
        b.response(start + 2 * NS_PER_S + 1, 1_000_000_000);
        b.error(start + 2 * NS_PER_S + 2);
        a.bytes(start + 2 * NS_PER_S + 3, 100);
        a.response(start + window + 1, 1); // after the window: ignored
        a.finish();
        b.finish();
        let t = collector.finish();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].responses, 2);
        assert_eq!(t[1].responses, 1);
        assert_eq!(t[2].responses, 1);
        assert_eq!(t[2].errors, 1);
        assert_eq!((t[2].start_s, t[2].end_s), (2.0, 2.5));
        assert_eq!(t[2].per_s, 2.0);
        assert_eq!(t[2].bits_per_s, 1600.0);
        assert_eq!(t[2].max_us, Some(1_000_000.0));
        assert!(t[0].p99_us.unwrap() >= 29.0);
    }

    #[test]
    fn an_idle_second_has_no_latency_figures() {
        let (tx, rx) = channel();
        let collector = TimelineCollector::new(rx, 1, 2 * NS_PER_S);
        let mut a = SecondRecorder::new(0, 2 * NS_PER_S, tx);
        a.response(NS_PER_S + 1, 5_000);
        a.finish();
        let t = collector.finish();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].responses, 0);
        assert_eq!(t[0].p50_us, None);
        assert_eq!(t[1].p50_us.map(|v| v.round()), Some(5.0));
    }
}
