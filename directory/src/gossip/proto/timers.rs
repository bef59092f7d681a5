//! One table of absolute deadlines; `next()` is the earliest (quinn-proto style).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Pending timers of kind `K`, fired in deadline order (ties in scheduling order).
#[derive(Debug)]
pub(crate) struct TimerTable<K> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, K>,
    seq: u64,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            items: HashMap::new(),
            seq: 0,
        }
    }
}

impl<K> TimerTable<K> {
    /// Schedules `kind` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, kind: K) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, kind);
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns a timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let Reverse((at, seq)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.items.remove(&seq)
    }

    /// Removes every timer matching `pred`.
    pub(crate) fn cancel(&mut self, pred: impl Fn(&K) -> bool) {
        self.items.retain(|_, k| !pred(k));
        let items = &self.items;
        self.heap
            .retain(|Reverse((_, seq))| items.contains_key(seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.schedule(t0 + Duration::from_millis(20), "b");
        t.schedule(t0 + Duration::from_millis(10), "a");
        t.schedule(t0 + Duration::from_millis(30), "c");
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + Duration::from_millis(25)), Some("a"));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(25)), Some("b"));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(25)), None);
        t.cancel(|k| *k == "c");
        assert_eq!(t.next(), None);
    }
}
