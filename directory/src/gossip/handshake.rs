//! Admission of anti-entropy connections: a bounded table of connections that have not yet
//! delivered an authenticated frame.
//!
//! Anyone who reaches the gossip TCP port can open connections without knowing the key.
//! Each accepted connection takes a slot here until its first frame authenticates (it then
//! leaves the table) or its deadline passes. When the table is full, a new connection
//! evicts the **oldest** waiting one rather than being refused: a real peer sends its
//! digest right after connecting and leaves the table within a round trip, so idle or junk
//! connections, however many, cannot keep it out; they only churn among themselves.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// The table of connections waiting to authenticate.
pub(super) struct Handshakes {
    waiting: Mutex<Waiting>,
    max: usize,
}

#[derive(Default)]
struct Waiting {
    slots: VecDeque<(u64, CancellationToken)>,
    next_id: u64,
}

impl Handshakes {
    /// A table of at most `max` waiting connections (at least one).
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(Waiting::default()),
            max: max.max(1),
        })
    }

    /// Takes a slot for a new connection, evicting the oldest waiting one if the table is
    /// full. Returns whether a connection was evicted.
    pub(super) fn enter(self: &Arc<Self>) -> (HandshakeSlot, bool) {
        let mut waiting = self.waiting.lock();
        let mut evicted = false;
        while waiting.slots.len() >= self.max {
            if let Some((_, oldest)) = waiting.slots.pop_front() {
                oldest.cancel();
                evicted = true;
            }
        }
        let id = waiting.next_id;
        waiting.next_id += 1;
        let token = CancellationToken::new();
        waiting.slots.push_back((id, token.clone()));
        let slot = HandshakeSlot {
            table: self.clone(),
            id,
            evicted: token,
        };
        (slot, evicted)
    }

    /// Connections waiting now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.lock().slots.len()
    }

    fn leave(&self, id: u64) {
        self.waiting.lock().slots.retain(|(slot, _)| *slot != id);
    }
}

/// One waiting connection's place in the table; dropping it (authenticated, failed or
/// evicted) frees the place.
pub(super) struct HandshakeSlot {
    table: Arc<Handshakes>,
    id: u64,
    evicted: CancellationToken,
}

impl HandshakeSlot {
    /// Resolves when a newer connection took this slot.
    pub(super) async fn evicted(&self) {
        self.evicted.cancelled().await;
    }

    #[cfg(test)]
    fn is_evicted(&self) -> bool {
        self.evicted.is_cancelled()
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.table.leave(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_oldest_waiting_connection() {
        let table = Handshakes::new(3);
        let (a, ea) = table.enter();
        let (b, _) = table.enter();
        let (c, _) = table.enter();
        assert!(!ea);
        assert_eq!(table.len(), 3);
        let (d, evicted) = table.enter();
        assert!(evicted && a.is_evicted(), "the oldest goes");
        assert!(!b.is_evicted() && !c.is_evicted() && !d.is_evicted());
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_slot_leaves_the_table_when_dropped() {
        let table = Handshakes::new(2);
        let (a, _) = table.enter();
        let (b, _) = table.enter();
        drop(a);
        assert_eq!(table.len(), 1);
        let (_c, evicted) = table.enter();
        assert!(!evicted, "a freed place is reused without eviction");
        assert!(!b.is_evicted());
        drop(b);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let table = Handshakes::new(8);
        let slots: Vec<_> = (0..1000).map(|_| table.enter().0).collect();
        assert_eq!(table.len(), 8);
        assert_eq!(slots.iter().filter(|s| !s.is_evicted()).count(), 8);
    }
}
