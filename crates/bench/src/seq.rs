//! Sequence-number accounting for UDP: which datagrams came back, which
//! came back twice, which came back after a later one.
//!
//! A ring of bits covers the last [`WINDOW`] sequence numbers, so memory is
//! fixed however long the run; an echo more than `WINDOW` numbers behind the
//! newest is counted as too late (and the datagram stays lost).

/// How many sequence numbers behind the newest an echo may arrive.
pub(crate) const WINDOW: u64 = 1 << 20;

/// What an arriving sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    New,
    Duplicate,
    TooLate,
}

#[derive(Debug)]
pub(crate) struct SeqTracker {
    bits: Vec<u64>,
    newest: Option<u64>,
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) too_late: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            bits: vec![0; (WINDOW / 64) as usize],
            newest: None,
            received: 0,
            duplicates: 0,
            reordered: 0,
            too_late: 0,
        }
    }
}

impl SeqTracker {
    fn slot(seq: u64) -> (usize, u64) {
        let pos = seq % WINDOW;
        ((pos / 64) as usize, 1 << (pos % 64))
    }

    /// Accounts one arriving sequence number.
    pub(crate) fn record(&mut self, seq: u64) -> Arrival {
        let newest = self.newest.unwrap_or(0);
        if self.newest.is_some() && seq + WINDOW <= newest {
            self.too_late += 1;
            return Arrival::TooLate;
        }
        let behind = self.newest.is_some_and(|n| seq < n);
        if self.newest.is_none_or(|n| seq > n) {
            self.advance(self.newest.map_or(0, |n| n + 1), seq);
            self.newest = Some(seq);
        }
        let (word, bit) = Self::slot(seq);
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.bits[word] |= bit;
        self.received += 1;
        if behind {
            self.reordered += 1;
        }
        Arrival::New
    }

    /// Clears the ring slots of `from..=to`, which are about to be reused.
    fn advance(&mut self, from: u64, to: u64) {
        if to - from >= WINDOW {
            self.bits.fill(0);
            return;
        }
        for seq in from..=to {
            let (word, bit) = Self::slot(seq);
            self.bits[word] &= !bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals_are_all_new() {
        let mut t = SeqTracker::default();
        for s in 0..1000 {
            assert_eq!(t.record(s), Arrival::New);
        }
        assert_eq!((t.received, t.duplicates, t.reordered), (1000, 0, 0));
    }

    #[test]
    fn counts_reordering_duplicates_and_gaps() {
        let mut t = SeqTracker::default();
        for s in [0, 2, 1, 3, 3, 7] {
            t.record(s);
        }
        assert_eq!(t.received, 5); // 4, 5, 6 lost
        assert_eq!(t.reordered, 1); // 1 after 2
        assert_eq!(t.duplicates, 1); // the second 3
    }

    #[test]
    fn the_ring_is_reused_without_false_duplicates() {
        let mut t = SeqTracker::default();
        for s in 0..3 * WINDOW + 5 {
            assert_eq!(t.record(s), Arrival::New, "seq {s}");
        }
        assert_eq!(t.received, 3 * WINDOW + 5);
        // A jump of more than a window, then an old one.
        let far = 10 * WINDOW;
        assert_eq!(t.record(far), Arrival::New);
        assert_eq!(t.record(far - 1), Arrival::New);
        assert_eq!(t.record(far - WINDOW), Arrival::TooLate);
        assert_eq!(t.too_late, 1);
    }
}
