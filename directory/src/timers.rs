//! One table of absolute deadlines, the vocabulary of every timer in the directory: the
//! registry's lease and tombstone timers and the gossip core's protocol timers.
//! `schedule` adds one, `next` is the earliest, `pop_due` takes the next one due
//! (quinn-proto style: a state machine's `poll_timeout` is `next`).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Pending timers of kind `K` on a clock whose instants are `I` (`std` or `tokio`), fired in
/// deadline order, ties in scheduling order. The kind never takes part in the ordering, so
/// it needs no `Ord`.
#[derive(Debug)]
pub(crate) struct TimerTable<I, K> {
    heap: BinaryHeap<Reverse<Scheduled<I, K>>>,
    seq: u64,
}

#[derive(Debug)]
struct Scheduled<I, K> {
    at: I,
    seq: u64,
    kind: K,
}

impl<I: Ord, K> PartialEq for Scheduled<I, K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<I: Ord, K> Eq for Scheduled<I, K> {}

impl<I: Ord, K> PartialOrd for Scheduled<I, K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<I: Ord, K> Ord for Scheduled<I, K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.at, self.seq).cmp(&(&other.at, other.seq))
    }
}

impl<I, K> Default for TimerTable<I, K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<I: Ord + Copy, K> TimerTable<I, K> {
    /// Schedules `kind` at `at`.
    pub(crate) fn schedule(&mut self, at: I, kind: K) {
        self.seq += 1;
        let seq = self.seq;
        self.heap.push(Reverse(Scheduled { at, seq, kind }));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<I> {
        self.heap.peek().map(|Reverse(s)| s.at)
    }

    /// Removes and returns a timer due at or before `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: I) -> Option<(I, K)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(s)| (s.at, s.kind))
    }

    /// Removes every timer matching `pred`.
    pub(crate) fn cancel(&mut self, pred: impl Fn(&K) -> bool) {
        self.heap.retain(|Reverse(s)| !pred(&s.kind));
    }

    /// Timers pending (stale ones included, for tables whose owner skips them on firing).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn timers_fire_in_deadline_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = TimerTable::default();
        t.schedule(ms(20), "b");
        t.schedule(ms(10), "a");
        t.schedule(ms(30), "c");
        assert_eq!(t.next(), Some(ms(10)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(ms(25)), Some((ms(10), "a")));
        assert_eq!(t.pop_due(ms(25)), Some((ms(20), "b")));
        assert_eq!(t.pop_due(ms(25)), None);
        t.cancel(|k| *k == "c");
        assert_eq!((t.next(), t.len()), (None, 0));
    }

    #[test]
    fn equal_deadlines_fire_in_scheduling_order() {
        let at = Instant::now();
        let mut t = TimerTable::default();
        for kind in ["first", "second", "third"] {
            t.schedule(at, kind);
        }
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(at))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(fired, ["first", "second", "third"]);
    }
}
