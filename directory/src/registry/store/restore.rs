//! Restoring what a node held before it stopped (from `crate::persist`): every entry goes
//! through the same rules, budget and timers as a replicated one, and is handed to the
//! replication hook so the cluster hears of it again (with its original version, so newer
//! copies elsewhere win).

use std::time::Duration;

use super::{Registry, ServiceState};
use crate::registry::clock::Now;
use crate::registry::rules::supersedes;
use crate::registry::{Entry, EntryState};

/// One entry read back from disk.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The entry; a live one's `lease_remaining` is what is left of its lease now (zero if
    /// it ran out while the node was down: it then expires at once, as it would have).
    pub entry: Entry,
    /// For a tombstone, how long ago it was written (its retention counts from there).
    pub age: Duration,
}

/// What [`Registry::restore`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Live records restored.
    pub live: usize,
    /// Tombstones restored.
    pub tombstones: usize,
    /// Entries skipped: tombstones past their retention, entries older than one held.
    pub skipped: usize,
    /// Live records refused because the store is full (counted like refused replicas).
    pub refused: usize,
}

impl Registry {
    /// Restores entries read back from disk at start (before serving), and raises the
    /// change index to at least `index` and the clock past `clock`, so neither goes back
    /// across a restart.
    pub fn restore(
        &self,
        entries: Vec<Restored>,
        index: u64,
        clock: u64,
        now: Now,
    ) -> RestoreStats {
        self.raise_index(index);
        self.inner.hlc.observe(clock);
        let mut stats = RestoreStats::default();
        for restored in entries {
            self.restore_one(restored, now, &mut stats);
        }
        stats
    }

    fn restore_one(&self, restored: Restored, now: Now, stats: &mut RestoreStats) {
        let Restored { entry, age } = restored;
        self.inner.hlc.observe(entry.version.hlc);
        let rules = &self.inner.config.replication;
        let live = entry.is_live();
        if !live && rules.tombstone_forgettable(age) {
            stats.skipped += 1;
            return;
        }
        let mut svc = self
            .inner
            .services
            .entry(entry.service.clone())
            .or_insert_with(|| ServiceState::new(entry.service.clone()));
        let held = svc.slots.get(&entry.instance).map(|s| s.version);
        if !supersedes(entry.version, held) {
            stats.skipped += 1;
            return;
        }
        let announce = entry.clone();
        match entry.state {
            EntryState::Live(state) => {
                if !self.admit_live(svc, entry.instance, entry.version, state, now) {
                    stats.refused += 1;
                    return;
                }
                stats.live += 1;
            }
            EntryState::Tombstone { reason } => {
                let written = Now {
                    instant: now.instant.checked_sub(age).unwrap_or(now.instant),
                    wall: now.wall.checked_sub(age).unwrap_or(now.wall),
                };
                self.store_tombstone(&mut svc, &entry.instance, entry.version, reason, written);
                stats.tombstones += 1;
            }
        }
        if let Some(tx) = &self.inner.replication {
            let _ = tx.send(announce);
        }
    }
}
