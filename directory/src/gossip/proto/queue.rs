//! Entries waiting to be piggybacked, each with a bounded number of transmissions left.

use std::collections::BTreeMap;
use std::time::Instant;

use super::replica::Replica;
use super::wire::{EntryKey, WireEntry, entry_size};

/// The dissemination backlog: key -> transmissions left. The entry itself is read from the
/// replica when sent, so a newer version replaces an older one for free.
#[derive(Debug, Default)]
pub(crate) struct BroadcastQueue {
    pending: BTreeMap<EntryKey, u32>,
}

impl BroadcastQueue {
    /// (Re)arms `key` for `transmissions` sends.
    pub(crate) fn push(&mut self, key: EntryKey, transmissions: u32) {
        self.pending.insert(key, transmissions);
    }

    /// Number of entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes entries fitting in `budget` bytes, least-sent first, and counts one transmission
    /// for each. Entries that can never fit `max_budget` (or vanished) are dropped from the
    /// backlog: anti-entropy carries them.
    pub(crate) fn fill(
        &mut self,
        replica: &Replica,
        now: Instant,
        budget: usize,
        max_budget: usize,
    ) -> Vec<WireEntry> {
        let mut order: Vec<(EntryKey, u32)> =
            self.pending.iter().map(|(k, n)| (k.clone(), *n)).collect();
        order.sort_by_key(|(_, left)| std::cmp::Reverse(*left));
        let mut used = 0;
        let mut out = Vec::new();
        for (key, _) in order {
            let Some(entry) = replica.current(now, &key) else {
                self.pending.remove(&key);
                continue;
            };
            let size = entry_size(&entry);
            if size > max_budget {
                self.pending.remove(&key);
                continue;
            }
            if used + size > budget {
                continue;
            }
            used += size;
            out.push(entry);
            if let Some(left) = self.pending.get_mut(&key) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.pending.remove(&key);
                }
            }
        }
        out
    }
}
