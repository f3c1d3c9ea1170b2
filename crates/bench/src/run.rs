//! Running measurement threads: pinning, a common start, the timeline
//! collector and the progress line.
//!
//! Every thread first sets up (connects) on its own; the run starts only when
//! all have succeeded, at one shared instant, so no thread measures while
//! others are still connecting. If any set-up fails, all threads are told to
//! stop and the first error is returned.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{now_ns, secs_to_ns};
use crate::error::BenchError;
use crate::report::Interval;
use crate::sys;
use crate::timeline::{SecondPiece, SecondRecorder, TimelineCollector};

/// Delay between "everyone is connected" and the first measured instant, so
/// all threads are waiting when it comes.
const START_DELAY_NS: u64 = 5_000_000;

/// Timing of a run, in monotonic nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// When load starts (warm-up included).
    pub(crate) start_ns: u64,
    /// When measuring starts (after the warm-up).
    pub(crate) measure_ns: u64,
    /// When load stops.
    pub(crate) end_ns: u64,
}

impl Window {
    pub(crate) fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.measure_ns && t_ns < self.end_ns
    }
}

/// How many threads, pinned where, for how long.
pub(crate) struct Plan {
    pub(crate) threads: usize,
    pub(crate) cpus: Vec<usize>,
    pub(crate) warmup_s: f64,
    pub(crate) duration_s: f64,
    /// Label for the progress line; `None`: no progress line.
    pub(crate) progress: Option<String>,
}

#[derive(Default)]
struct GateState {
    ready: usize,
    failure: Option<BenchError>,
    /// `Some(Some(start))`: go; `Some(None)`: abort.
    decision: Option<Option<u64>>,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

/// What a measurement thread gets: its index, the start gate, and the
/// timeline channel.
pub(crate) struct WorkerCtx {
    pub(crate) index: usize,
    gate: Arc<Gate>,
    tx: Sender<SecondPiece>,
    warmup_ns: u64,
    duration_ns: u64,
}

impl WorkerCtx {
    /// Reports the outcome of set-up and waits for the common start.
    /// Returns the window and the thread's timeline recorder.
    pub(crate) fn ready<T>(
        self, setup: Result<T, BenchError>,
    ) -> Result<(T, Window, SecondRecorder), BenchError> {
        let mut state = self.gate.state.lock().expect("gate lock");
        let value = match setup {
            Ok(value) => value,
            Err(e) => {
                state.failure.get_or_insert(e);
                self.gate.changed.notify_all();
                return Err(aborted());
            }
        };
        state.ready += 1;
        self.gate.changed.notify_all();
        let state =
            self.gate.changed.wait_while(state, |s| s.decision.is_none()).expect("gate lock");
        let Some(Some(start_ns)) = state.decision else { return Err(aborted()) };
        let measure_ns = start_ns + self.warmup_ns;
        let window = Window { start_ns, measure_ns, end_ns: measure_ns + self.duration_ns };
        let recorder = SecondRecorder::new(window.measure_ns, window.end_ns, self.tx);
        Ok((value, window, recorder))
    }
}

fn aborted() -> BenchError {
    BenchError::io("run aborted", std::io::Error::other("another thread failed to set up"))
}

/// Runs `threads` copies of `work` and returns their results in thread
/// order plus the merged timeline.
pub(crate) fn run_threads<R, F>(plan: &Plan, work: F) -> Result<(Vec<R>, Vec<Interval>), BenchError>
where
    R: Send + 'static,
    F: Fn(WorkerCtx) -> Result<R, BenchError> + Send + Sync + 'static,
{
    sys::check_cpus(&plan.cpus)?;
    let gate = Arc::new(Gate::default());
    let (tx, rx) = channel();
    let work = Arc::new(work);
    let warmup_ns = secs_to_ns(plan.warmup_s);
    let duration_ns = secs_to_ns(plan.duration_s);
    let mut handles: Vec<JoinHandle<Result<R, BenchError>>> = Vec::new();
    for index in 0..plan.threads {
        let ctx =
            WorkerCtx { index, gate: Arc::clone(&gate), tx: tx.clone(), warmup_ns, duration_ns };
        let (work, cpus) = (Arc::clone(&work), plan.cpus.clone());
        let spawned =
            std::thread::Builder::new().name(format!("nhb-client-{index}")).spawn(move || {
                if let Err(e) = sys::pin_worker(&cpus, index) {
                    return ctx.ready::<()>(Err(e)).map(|_| unreachable!("set-up failed"));
                }
                work(ctx)
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                decide(&gate, None);
                let _ = join_all(handles); // they can only report the abort
                return Err(BenchError::io("starting a measurement thread", e));
            }
        }
    }
    drop(tx);
    let start = wait_for_setup(&gate, plan.threads);
    decide(&gate, start);
    if start.is_none() {
        let _ = join_all(handles); // the set-up failure below is what matters
        let failure = gate.state.lock().expect("gate lock").failure.take();
        return Err(failure.unwrap_or(BenchError::WorkerPanicked));
    }
    let mut collector = TimelineCollector::new(rx, plan.threads, duration_ns);
    let mut progress = plan
        .progress
        .as_ref()
        .filter(|_| std::io::stderr().is_terminal())
        .map(|label| Progress { label: label.clone(), duration_s: plan.duration_s });
    while handles.iter().any(|h| !h.is_finished()) {
        for interval in collector.poll(Duration::from_millis(200)) {
            if let Some(p) = progress.as_mut() {
                p.show(interval);
            }
        }
    }
    if progress.is_some() {
        eprint!("\r\x1b[2K");
    }
    let results = join_all(handles)?;
    Ok((results, collector.finish()))
}

/// Waits until every thread reported; returns the start time, or `None` if
/// one failed.
fn wait_for_setup(gate: &Gate, threads: usize) -> Option<u64> {
    let state = gate.state.lock().expect("gate lock");
    let state = gate
        .changed
        .wait_while(state, |s| s.failure.is_none() && s.ready < threads)
        .expect("gate lock");
    state.failure.is_none().then(|| now_ns() + START_DELAY_NS)
}

fn decide(gate: &Gate, start: Option<u64>) {
    gate.state.lock().expect("gate lock").decision = Some(start);
    gate.changed.notify_all();
}

fn join_all<R>(handles: Vec<JoinHandle<Result<R, BenchError>>>) -> Result<Vec<R>, BenchError> {
    let mut results = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(BenchError::WorkerPanicked);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// The one-line progress display on stderr (only on a terminal).
struct Progress {
    label: String,
    duration_s: f64,
}

impl Progress {
    fn show(&mut self, i: &Interval) {
        let latency = match i.p99_us {
            Some(p99) => format!("  p99 {}", crate::render::fmt_us(p99)),
            None => String::new(),
        };
        let load = if i.responses > 0 {
            format!("{:.0}/s", i.per_s)
        } else {
            format!("{}/s", crate::render::fmt_bits(i.bits_per_s))
        };
        eprint!(
            "\r\x1b[2K{} {:>4.0}/{:.0} s  {load}{latency}  errors {}",
            self.label, i.end_s, self.duration_s, i.errors
        );
        let _ = std::io::stderr().flush();
    }
}
