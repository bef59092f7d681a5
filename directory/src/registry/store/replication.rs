//! Replication: merging entries from other nodes (last writer wins) and listing entries
//! for anti-entropy.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::time::Instant;

use super::writes::change_kind;
use super::{Registry, ServiceState, Slot, SlotState};
use crate::registry::version::Version;
use crate::registry::{Entry, EntryState, LiveState, Record};
use crate::registry::{InstanceId, ServiceName};

/// Result of [`Registry::merge_remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The entry was newer and replaced the local one.
    Applied,
    /// The local entry is as new or newer; nothing changed.
    Stale,
}

impl Registry {
    /// Applies an entry from another node if its version is newer (last writer wins).
    /// An applied entry updates the change index and notifies watchers like a local write
    /// (unless it is only a renewal); a live entry's lease ends at `now + lease_remaining`.
    /// Remote entries are admitted even above the capacity limit, so replicas converge.
    pub fn merge_remote(&self, entry: Entry, now: Instant) -> MergeOutcome {
        self.inner.hlc.observe(entry.version.hlc);
        let mut svc = self
            .inner
            .services
            .entry(entry.service.clone())
            .or_insert_with(|| ServiceState::new(entry.service.clone()));
        let current = svc.slots.get(&entry.instance).map(|s| s.version);
        if current.is_some_and(|v| v >= entry.version) {
            return MergeOutcome::Stale;
        }
        match entry.state {
            EntryState::Live(live) => {
                self.merge_live(&mut svc, entry.instance, entry.version, live, now)
            }
            EntryState::Tombstone { reason } => {
                self.store_tombstone(&mut svc, &entry.instance, entry.version, reason, now)
            }
        }
        MergeOutcome::Applied
    }

    fn merge_live(
        &self,
        svc: &mut ServiceState,
        instance: InstanceId,
        version: Version,
        live: LiveState,
        now: Instant,
    ) {
        let previous = svc
            .slots
            .get(&instance)
            .and_then(Slot::live_record)
            .cloned();
        let unchanged = previous.as_ref().is_some_and(|p| live.same_content_as(p));
        let index = match &previous {
            Some(p) if unchanged => p.index,
            _ => self.next_index(),
        };
        let kind = change_kind(previous.is_some(), unchanged);
        if previous.is_none() {
            svc.live += 1;
            self.inner.live.fetch_add(1, Ordering::AcqRel);
        }
        let record = Arc::new(Record {
            service: svc.name.clone(),
            instance,
            address: live.address,
            tags: live.tags,
            meta: live.meta,
            ttl: live.ttl,
            fingerprint: live.fingerprint,
            owner: live.owner,
            index,
            registered_at: live.registered_at,
            lease_expires_at: SystemTime::now() + live.lease_remaining,
        });
        let deadline = now + live.lease_remaining;
        self.store_live(svc, record, version, deadline, kind);
    }

    /// Every entry, tombstones included, with leases as remaining durations at `now`
    /// (for anti-entropy digests and full syncs). Locks one service at a time.
    pub fn entries(&self, now: Instant) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len());
        for svc in self.inner.services.iter() {
            out.extend(
                svc.slots
                    .iter()
                    .map(|(id, slot)| slot.to_entry(&svc.name, id, now)),
            );
        }
        out
    }

    /// One entry (live or tombstone), as [`entries`](Self::entries) would report it.
    pub fn entry(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        now: Instant,
    ) -> Option<Entry> {
        let svc = self.inner.services.get(service)?;
        svc.slots
            .get(instance)
            .map(|s| s.to_entry(service, instance, now))
    }
}

impl Slot {
    fn to_entry(&self, service: &ServiceName, instance: &InstanceId, now: Instant) -> Entry {
        match &self.state {
            SlotState::Live {
                record, deadline, ..
            } => Entry::live(
                record,
                self.version,
                deadline.saturating_duration_since(now),
            ),
            SlotState::Tombstone { reason } => {
                Entry::tombstone(service, instance, self.version, *reason)
            }
        }
    }
}
