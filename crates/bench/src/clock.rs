//! Time: one monotonic nanosecond clock for every timestamp, and a precise
//! wake-up for the open-loop schedule.
//!
//! `epoll_wait` (and so `mio::Poll`) only takes millisecond timeouts; an
//! open-loop client that woke up to 1 ms late would add that lateness to
//! every latency it measures from the intended send time. A `timerfd` armed
//! at an absolute `CLOCK_MONOTONIC` time fires with hrtimer precision and is
//! registered with the poll like any socket.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::time::clock_gettime;

/// Now, in nanoseconds of `CLOCK_MONOTONIC` (the clock `timerfd` uses).
pub(crate) fn now_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero here would only make one
    // sample wrong, never hang.
    let ts =
        clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap_or_else(|_| TimeSpec::new(0, 0));
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Seconds to nanoseconds.
pub(crate) fn secs_to_ns(secs: f64) -> u64 {
    (secs * 1e9).round() as u64
}

/// A poll timeout that ends at `deadline_ns` (at least 0, at most `cap`).
pub(crate) fn until(deadline_ns: u64, now_ns: u64, cap: Duration) -> Duration {
    Duration::from_nanos(deadline_ns.saturating_sub(now_ns)).min(cap)
}

/// Sleeps until `deadline_ns` (used before a run starts, not in load loops).
pub(crate) fn sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

/// Longest busy-wait before an intended send time.
const MAX_LEAD_NS: u64 = 200_000;

/// A one-shot wake-up at an absolute monotonic time, pollable with mio.
///
/// Waking a sleeping thread takes time (a few µs on bare metal, tens of µs
/// in some VMs), and every µs of it would be charged to the server by a
/// latency measured from the intended time. So the pacer learns how late its
/// wake-ups are and arms the timer that much early (at most 200 µs); the
/// caller then polls without blocking (spins) for the last stretch.
///
/// The spin is also capped at a quarter of the thread's interval between
/// sends, so pacing never keeps a CPU more than ~25% busy: a thread that
/// spins all the time is the first the scheduler preempts when the machine
/// is shared, and then every reply waits for it, which costs far more than
/// the wake-up lateness the spin saves.
pub(crate) struct Pacer {
    timer: TimerFd,
    armed_ns: Option<u64>,
    /// Moving average of how late the timer fired, ns.
    lateness_ns: u64,
    /// Upper bound of the spin, ns.
    max_lead_ns: u64,
}

impl Pacer {
    /// A pacer for a thread that sends every `interval_ns` on average.
    pub(crate) fn new(interval_ns: u64) -> io::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // Shrink this thread's timer slack too (default 50 µs): it applies to
        // the poll's own timeouts. Best effort — only precision suffers.
        let _ = nix::sys::prctl::set_timerslack(1);
        let max_lead_ns = (interval_ns / 4).min(MAX_LEAD_NS);
        Ok(Pacer { timer, armed_ns: None, lateness_ns: 20_000, max_lead_ns })
    }

    /// How early to wake before an intended time.
    fn lead_ns(&self) -> u64 {
        (2 * self.lateness_ns + 2_000).min(self.max_lead_ns)
    }

    /// Prepares to wait for `next_ns`: returns `true` when it is so close
    /// that the caller should poll without blocking, otherwise arms the
    /// timer a little early and returns `false`.
    pub(crate) fn wait_for(&mut self, next_ns: u64, now_ns: u64) -> io::Result<bool> {
        let lead = self.lead_ns();
        if next_ns <= now_ns + lead {
            return Ok(true);
        }
        self.arm(next_ns - lead)?;
        Ok(false)
    }

    pub(crate) fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        let fd = self.timer.as_fd().as_raw_fd();
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)
    }

    /// Makes the poll wake up at `at_ns` (a no-op if already armed for it).
    fn arm(&mut self, at_ns: u64) -> io::Result<()> {
        if self.armed_ns == Some(at_ns) {
            return Ok(());
        }
        // An all-zero time would disarm the timer; monotonic times are never 0.
        let at = TimeSpec::from_duration(Duration::from_nanos(at_ns.max(1)));
        self.timer.set(Expiration::OneShot(at), TimerSetTimeFlags::TFD_TIMER_ABSTIME)?;
        self.armed_ns = Some(at_ns);
        Ok(())
    }

    /// Call when the timer's token fires: clears the expiration count so the
    /// edge-triggered poll reports the next expiry again.
    pub(crate) fn fired(&mut self, now_ns: u64) {
        let mut buf = [0u8; 8];
        // EAGAIN (already cleared) is fine.
        let _ = nix::unistd::read(self.timer.as_fd(), &mut buf);
        if let Some(armed) = self.armed_ns.take() {
            let late = now_ns.saturating_sub(armed).min(MAX_LEAD_NS);
            self.lateness_ns = (7 * self.lateness_ns + late) / 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    #[test]
    fn clock_is_monotonic_and_in_nanoseconds() {
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = now_ns();
        assert!(b - a >= 2_000_000 && b - a < 1_000_000_000, "{a} {b}");
    }

    #[test]
    fn until_is_clamped() {
        assert_eq!(until(10, 20, Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(until(2_000_000_000, 0, Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(until(1_500, 1_000, Duration::from_secs(1)), Duration::from_nanos(500));
    }

    #[test]
    fn pacer_wakes_the_poll_close_to_the_requested_time() {
        let mut poll = Poll::new().unwrap();
        let mut pacer = Pacer::new(1_000_000).unwrap();
        pacer.register(poll.registry(), Token(7)).unwrap();
        let target = now_ns() + 600_000; // 0.6 ms: below epoll's 1 ms granularity
        assert!(!pacer.wait_for(target, now_ns()).unwrap());
        let armed = pacer.armed_ns.unwrap();
        assert!(armed < target && armed >= target - MAX_LEAD_NS);
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(2))).unwrap();
        let woke = now_ns();
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert!(woke >= armed, "woke {} ns early", armed - woke);
        // Generous bound: shared CI machines; the point is "not a whole ms+ late by design".
        assert!(woke - armed < 50_000_000, "woke {} ns late", woke - armed);
        pacer.fired(woke);
        assert!(pacer.armed_ns.is_none());
        // Within the lead the caller is told to spin instead.
        assert!(pacer.wait_for(woke + 1_000, woke).unwrap());
    }

    #[test]
    fn the_spin_is_at_most_a_quarter_of_the_interval() {
        let mut pacer = Pacer::new(40_000).unwrap(); // a send every 40 µs
        pacer.lateness_ns = 150_000; // very late wake-ups
        assert_eq!(pacer.lead_ns(), 10_000);
        let now = now_ns();
        assert!(!pacer.wait_for(now + 20_000, now).unwrap(), "20 µs ahead: sleep, do not spin");
        assert!(pacer.wait_for(now + 5_000, now).unwrap());
    }
}
