//! Replication: merging entries from other nodes. Which one wins is decided by
//! [`crate::registry::supersedes`] (the rules module), not here.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::writes::change_kind;
use super::{Registry, ServiceState, Slot};
use crate::registry::InstanceId;
use crate::registry::clock::Now;
use crate::registry::rules::supersedes;
use crate::registry::version::Version;
use crate::registry::{Entry, EntryState, LiveState, Record};

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
    pub fn merge_remote(&self, entry: Entry, now: impl Into<Now>) -> MergeOutcome {
        let now = now.into();
        self.inner.hlc.observe(entry.version.hlc);
        let mut svc = self
            .inner
            .services
            .entry(entry.service.clone())
            .or_insert_with(|| ServiceState::new(entry.service.clone()));
        let current = svc.slots.get(&entry.instance).map(|s| s.version);
        if !supersedes(entry.version, current) {
            return MergeOutcome::Stale;
        }
        match entry.state {
            EntryState::Live(live) => {
                self.merge_live(&mut svc, entry.instance, entry.version, live, now)
            }
            EntryState::Tombstone { reason } => self.store_tombstone(
                &mut svc,
                &entry.instance,
                entry.version,
                reason,
                now.instant,
            ),
        }
        MergeOutcome::Applied
    }

    fn merge_live(
        &self,
        svc: &mut ServiceState,
        instance: InstanceId,
        version: Version,
        live: LiveState,
        now: Now,
    ) {
        let previous = svc
            .slots
            .get(&instance)
            .and_then(Slot::live_record)
            .cloned();
        let unchanged = previous.as_ref().is_some_and(|p| live.same_content_as(p));
        let (index, ticket) = self.live_index(previous.as_deref(), unchanged);
        let change = change_kind(previous.is_some(), unchanged).zip(ticket);
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
            lease_expires_at: now.wall + live.lease_remaining,
        });
        let deadline = now.instant + live.lease_remaining;
        self.store_live(svc, record, version, deadline, change);
    }
}

#[cfg(test)]
impl Registry {
    /// Every slot's service, instance, version and liveness, sorted: what the merge tests
    /// compare (tombstones included). Tests only; nothing else lists slots.
    pub(crate) fn held_versions(&self) -> Vec<(String, String, Version, bool)> {
        let mut out: Vec<_> = self
            .inner
            .services
            .iter()
            .flat_map(|svc| {
                svc.slots
                    .iter()
                    .map(|(id, slot)| {
                        let live = slot.live_record().is_some();
                        (svc.name.to_string(), id.to_string(), slot.version, live)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }
}
