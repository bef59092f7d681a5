//! One table of absolute deadlines; [`Timers::next`] is the earliest.

use std::collections::BTreeSet;
use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// Retry, ack timeout or delivery deadline of one outgoing message (whichever is first).
    Message(u64),
    /// Periodic sweep of idle senders' dedup windows.
    Sweep,
}

/// Absolute deadlines ordered by time, then key.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    table: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    /// Arms `key` at `at`; `previous` is the deadline it had (if any), which is replaced.
    pub(crate) fn set(&mut self, key: TimerKey, previous: Option<Instant>, at: Instant) {
        if let Some(prev) = previous {
            self.table.remove(&(prev, key));
        }
        self.table.insert((at, key));
    }

    /// Disarms `key` armed at `at`.
    pub(crate) fn cancel(&mut self, key: TimerKey, at: Option<Instant>) {
        if let Some(at) = at {
            self.table.remove(&(at, key));
        }
    }

    /// Earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.table.first().map(|(at, _)| *at)
    }

    /// Removes and returns one expired timer, earliest first.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<TimerKey> {
        let (at, _) = self.table.first()?;
        if *at > now {
            return None;
        }
        self.table.pop_first().map(|(_, key)| key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_deadline_order_and_rearming_replaces() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(TimerKey::Message(1), None, t0 + Duration::from_secs(3));
        t.set(TimerKey::Message(2), None, t0 + Duration::from_secs(1));
        t.set(
            TimerKey::Message(1),
            Some(t0 + Duration::from_secs(3)),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_expired(t0), None);
        let late = t0 + Duration::from_secs(5);
        assert_eq!(t.pop_expired(late), Some(TimerKey::Message(2)));
        assert_eq!(t.pop_expired(late), Some(TimerKey::Message(1)));
        assert_eq!(t.pop_expired(late), None);
    }
}
