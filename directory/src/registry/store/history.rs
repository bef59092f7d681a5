//! The bounded history of change events that resumed watches replay from (`Last-Event-ID`,
//! `?index=`). I/O-free: the store appends each event under its sequencing lock, so the
//! history is in index order, and answers "what happened after index N?".

use std::collections::VecDeque;

use crate::registry::ChangeEvent;

/// What a watcher that last saw index `after` has missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every change after `after` (possibly none), oldest first.
    Events(Vec<ChangeEvent>),
    /// The history no longer reaches back to `after` (or `after` is ahead of this node,
    /// e.g. an index from before a restart): the watcher must re-read the state, which is
    /// at `current` or later, and continue from there.
    Gap {
        /// The node's change index now.
        current: u64,
    },
}

/// The last `capacity` change events, in index order.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    capacity: usize,
    events: VecDeque<ChangeEvent>,
    /// Every event with an index above `floor` is still held (0: nothing evicted yet).
    floor: u64,
    /// The last index handed out.
    last: u64,
}

impl ChangeLog {
    /// An empty history holding at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            events: VecDeque::with_capacity(capacity.min(1024)),
            floor: 0,
            last: 0,
        }
    }

    /// Hands out the next change index.
    pub(crate) fn next_index(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// The last index handed out.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Moves the index up to `index` without events (restored state): nothing before it
    /// can be replayed.
    pub(crate) fn raise_to(&mut self, index: u64) {
        if index > self.last {
            self.last = index;
            self.floor = index;
            self.events.clear();
        }
    }

    /// Appends an event (its index is the newest handed out); evicts the oldest above
    /// capacity.
    pub(crate) fn push(&mut self, event: ChangeEvent) {
        self.events.push_back(event);
        while self.events.len() > self.capacity {
            if let Some(old) = self.events.pop_front() {
                self.floor = old.index;
            }
        }
    }

    /// The changes after index `after`, or a gap when the history cannot tell.
    pub(crate) fn since(&self, after: u64) -> Replay {
        if after < self.floor || after > self.last {
            return Replay::Gap { current: self.last };
        }
        let start = self.events.partition_point(|e| e.index <= after);
        Replay::Events(self.events.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ChangeKind;

    fn log_with(capacity: usize, events: u64) -> ChangeLog {
        let mut log = ChangeLog::new(capacity);
        for _ in 0..events {
            let index = log.next_index();
            log.push(ChangeEvent {
                kind: ChangeKind::Registered,
                service: "s".parse().unwrap(),
                instance: format!("i-{index}").parse().unwrap(),
                index,
                record: None,
            });
        }
        log
    }

    fn indexes(replay: Replay) -> Vec<u64> {
        match replay {
            Replay::Events(events) => events.iter().map(|e| e.index).collect(),
            Replay::Gap { current } => panic!("gap at {current}"),
        }
    }

    #[test]
    fn replays_exactly_the_events_after_the_given_index() {
        let log = log_with(8, 5);
        assert_eq!(indexes(log.since(0)), [1, 2, 3, 4, 5]);
        assert_eq!(indexes(log.since(3)), [4, 5]);
        assert!(indexes(log.since(5)).is_empty());
    }

    #[test]
    fn an_index_older_than_the_history_is_a_gap_with_the_current_index() {
        let log = log_with(3, 10);
        assert_eq!(indexes(log.since(7)), [8, 9, 10]);
        assert_eq!(log.since(6), Replay::Gap { current: 10 });
        assert_eq!(log.since(0), Replay::Gap { current: 10 });
    }

    #[test]
    fn an_index_ahead_of_the_node_is_a_gap() {
        let log = log_with(3, 2);
        assert_eq!(log.since(3), Replay::Gap { current: 2 });
    }

    #[test]
    fn a_raised_index_continues_from_there_and_older_ones_are_a_gap() {
        let mut log = log_with(8, 2);
        log.raise_to(50);
        assert_eq!(log.next_index(), 51);
        assert_eq!(log.since(2), Replay::Gap { current: 51 });
        log.raise_to(10);
        assert_eq!(log.last(), 51, "never goes back");
    }

    #[test]
    fn the_history_never_holds_more_than_its_capacity() {
        let log = log_with(4, 100);
        assert_eq!(log.events.len(), 4);
        assert_eq!(log.last(), 100);
    }
}
