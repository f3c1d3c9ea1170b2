//! The fixed send schedule of open-loop runs.
//!
//! Request `i` (counted across all connections) is intended at
//! `start + i / rate`. Requests are dealt round-robin, so connection `c` sends
//! requests `i = k·C + c` for k = 0, 1, 2, … Intended times depend only on
//! `i`: nothing that happens during the run (a blocked connection, a late
//! wake-up) moves them, which is what makes latencies measured from them
//! coordinated-omission correct.
//!
//! The arithmetic is exact integer math on the rate in milli-requests per
//! second, so intended times never drift, however long the run.

/// Nanoseconds per second, times 1000 (the rate is kept in 1/1000 units).
const NS_PER_S_MILLI: u128 = 1_000_000_000 * 1000;

/// The run-wide schedule (shared, immutable).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start_ns: u64,
    /// Requests per 1000 seconds (≥ 1).
    rate_milli: u128,
    connections: u64,
}

impl Schedule {
    /// A schedule of `rate_per_s` requests per second over `connections`
    /// connections, starting at `start_ns` (monotonic clock).
    pub(crate) fn new(start_ns: u64, rate_per_s: f64, connections: u32) -> Self {
        let rate_milli = ((rate_per_s * 1000.0).round() as u128).max(1);
        Schedule { start_ns, rate_milli, connections: u64::from(connections.max(1)) }
    }

    /// Offset of global request `i` from the start, in ns.
    fn offset_ns(&self, i: u64) -> u64 {
        // 64-bit division when the product fits (the common case): 128-bit
        // division is a slow library call and this runs twice per request.
        match i.checked_mul(NS_PER_S_MILLI as u64) {
            Some(scaled) => scaled / self.rate_milli as u64,
            None => (u128::from(i) * NS_PER_S_MILLI / self.rate_milli) as u64,
        }
    }

    /// Intended send time of the `k`-th request of connection `conn`.
    pub(crate) fn intended_ns(&self, conn: u32, k: u64) -> u64 {
        self.start_ns + self.offset_ns(k * self.connections + u64::from(conn))
    }

    /// How many requests (all connections) are intended strictly before
    /// `offset_ns` after the start.
    pub(crate) fn scheduled_before(&self, offset_ns: u64) -> u64 {
        // floor(i·S/r) < o  ⇔  i·S < o·r  ⇔  i < o·r/S, so the count is ceil(o·r/S).
        match offset_ns.checked_mul(self.rate_milli as u64) {
            Some(scaled) => scaled.div_ceil(NS_PER_S_MILLI as u64),
            None => (u128::from(offset_ns) * self.rate_milli).div_ceil(NS_PER_S_MILLI) as u64,
        }
    }

    /// How many requests of connection `conn` are intended strictly before
    /// `offset_ns` after the start.
    pub(crate) fn conn_scheduled_before(&self, conn: u32, offset_ns: u64) -> u64 {
        let n = self.scheduled_before(offset_ns);
        let c = u64::from(conn);
        if c >= n {
            0
        } else {
            (n - 1 - c) / self.connections + 1
        }
    }
}

/// Walks one thread's share of the schedule in intended-time order.
///
/// A thread owns some connections (by global index, ascending); its requests
/// in time order are k-major, connection-minor, which is monotone because all
/// of a thread's connections fall within one round of `C` consecutive slots.
#[derive(Debug, Clone)]
pub(crate) struct LocalCursor {
    conns: Vec<u32>,
    next: u64,
}

/// One scheduled request: which local connection, its per-connection index,
/// and when it is intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) local: usize,
    pub(crate) k: u64,
    pub(crate) intended_ns: u64,
}

impl LocalCursor {
    /// `conns` are the global indices of the thread's connections, ascending.
    pub(crate) fn new(conns: Vec<u32>) -> Self {
        debug_assert!(conns.windows(2).all(|w| w[0] < w[1]));
        LocalCursor { conns, next: 0 }
    }

    /// The next request of this thread, not yet handed out.
    pub(crate) fn peek(&self, schedule: &Schedule) -> Slot {
        self.peek_ahead(schedule, 0)
    }

    /// The request `ahead` places after the next one.
    pub(crate) fn peek_ahead(&self, schedule: &Schedule, ahead: u64) -> Slot {
        let n = self.conns.len() as u64;
        let j = self.next + ahead;
        let local = (j % n) as usize;
        let k = j / n;
        Slot { local, k, intended_ns: schedule.intended_ns(self.conns[local], k) }
    }

    pub(crate) fn advance(&mut self) {
        self.next += 1;
    }

    /// Marks the first `released` requests of this thread as handed out.
    pub(crate) fn jump_to(&mut self, released: u64) {
        self.next = released;
    }

    /// How many of this thread's requests have been handed out.
    pub(crate) fn position(&self) -> u64 {
        self.next
    }

    /// How many of this thread's requests are intended strictly before
    /// `offset_ns` after the start, in O(log connections): `n` global
    /// requests are `n / C` whole rounds plus the first `n % C` connections.
    pub(crate) fn released_by(&self, schedule: &Schedule, offset_ns: u64) -> u64 {
        let n = schedule.scheduled_before(offset_ns);
        let c = schedule.connections;
        let partial = self.conns.partition_point(|&id| u64::from(id) < n % c) as u64;
        (n / c) * self.conns.len() as u64 + partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate_exactly() {
        let s = Schedule::new(1_000, 1000.0, 1);
        assert_eq!(s.intended_ns(0, 0), 1_000);
        assert_eq!(s.intended_ns(0, 1), 1_000 + 1_000_000);
        // No drift after a long run: request 3.6 M at 1000/s is at exactly 3600 s.
        assert_eq!(s.intended_ns(0, 3_600_000), 1_000 + 3_600_000_000_000);
    }

    #[test]
    fn the_64_bit_fast_path_agrees_with_128_bit_math() {
        let s = Schedule::new(7, 12_345.678, 3);
        for i in [0u64, 1, 17, 18_000_000, 18_446_744, 18_446_745, 50_000_000, 1_000_000_000_000] {
            let exact = (u128::from(i) * NS_PER_S_MILLI / s.rate_milli) as u64;
            assert_eq!(s.offset_ns(i), exact, "i = {i}");
        }
        let fast = Schedule::new(0, 10_000_000.0, 1); // rate_milli 1e10: products overflow u64 soon
        for offset in [1u64, 1_000_000_000, 1_844_674_407, 1_844_674_408, 3_600_000_000_000] {
            let exact = (u128::from(offset) * fast.rate_milli).div_ceil(NS_PER_S_MILLI) as u64;
            assert_eq!(fast.scheduled_before(offset), exact, "offset = {offset}");
        }
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        let s = Schedule::new(0, 3.0, 1);
        assert_eq!(s.intended_ns(0, 1), 333_333_333);
        assert_eq!(s.intended_ns(0, 3), 1_000_000_000);
        assert_eq!(s.intended_ns(0, 3_000), 1_000_000_000_000);
    }

    #[test]
    fn connections_interleave_round_robin() {
        let s = Schedule::new(0, 1000.0, 4);
        // Global request i = k*4 + c at i ms.
        assert_eq!(s.intended_ns(0, 0), 0);
        assert_eq!(s.intended_ns(1, 0), 1_000_000);
        assert_eq!(s.intended_ns(3, 0), 3_000_000);
        assert_eq!(s.intended_ns(0, 1), 4_000_000);
        assert_eq!(s.intended_ns(2, 5), 22_000_000);
    }

    #[test]
    fn scheduled_counts_match_rate_times_duration() {
        let s = Schedule::new(0, 1000.0, 10);
        assert_eq!(s.scheduled_before(10_000_000_000), 10_000);
        assert_eq!(s.scheduled_before(0), 0);
        // Requests at 0 and 1 ms are strictly before 1.5 ms; the one at 1 ms is not before 1 ms.
        assert_eq!(s.scheduled_before(1_500_000), 2);
        assert_eq!(s.scheduled_before(1_000_000), 1);
        let per_conn: u64 = (0..10).map(|c| s.conn_scheduled_before(c, 10_000_000_000)).sum();
        assert_eq!(per_conn, 10_000);
        assert_eq!(s.conn_scheduled_before(3, 10_000_000_000), 1_000);
    }

    #[test]
    fn per_connection_counts_agree_with_intended_times() {
        let s = Schedule::new(0, 777.0, 7);
        for offset in [0u64, 1, 999_999, 5_000_000, 123_456_789, 2_000_000_001] {
            for c in 0..7 {
                let by_count = s.conn_scheduled_before(c, offset);
                let by_scan =
                    (0..10_000).take_while(|&k| s.intended_ns(c, k) < offset).count() as u64;
                assert_eq!(by_count, by_scan, "conn {c} offset {offset}");
            }
        }
    }

    #[test]
    fn local_cursor_is_monotone_and_covers_its_connections() {
        let s = Schedule::new(0, 10_000.0, 5);
        let mut cursor = LocalCursor::new(vec![1, 3, 4]);
        let mut last = 0;
        let mut seen = [0u64; 3];
        for _ in 0..300 {
            let slot = cursor.peek(&s);
            assert!(slot.intended_ns >= last);
            assert_eq!(slot.k, seen[slot.local]);
            seen[slot.local] += 1;
            last = slot.intended_ns;
            cursor.advance();
        }
        assert_eq!(seen, [100, 100, 100]);
        let ahead = cursor.peek_ahead(&s, 4);
        // Jumping to "everything before t" agrees with the per-connection counts.
        let mut jumped = LocalCursor::new(vec![1, 3, 4]);
        let t = 12_345_678;
        let released: u64 = [1, 3, 4].iter().map(|&c| s.conn_scheduled_before(c, t)).sum();
        assert_eq!(jumped.released_by(&s, t), released);
        for t in [0, 1, 99_999, 100_000, 100_001, 250_000, 7_777_777] {
            let by_conn: u64 = [1, 3, 4].iter().map(|&c| s.conn_scheduled_before(c, t)).sum();
            assert_eq!(jumped.released_by(&s, t), by_conn, "t = {t}");
        }
        jumped.jump_to(released);
        assert!(jumped.peek(&s).intended_ns >= t);
        assert!(jumped.peek_ahead(&s, 0).intended_ns < t + 100_000 * 3);
        for _ in 0..4 {
            cursor.advance();
        }
        assert_eq!(cursor.peek(&s), ahead);
    }
}
