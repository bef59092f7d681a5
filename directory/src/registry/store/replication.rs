//! Replication: merging entries from other nodes. Which one wins is decided by
//! [`crate::registry::supersedes`] (the rules module), not here.

use std::sync::Arc;

use super::budget::record_bytes;
use super::writes::change_kind;
use super::{Registry, ServiceState, Slot};
use dashmap::mapref::one::RefMut;

use crate::registry::clock::Now;
use crate::registry::error::RegisterError;
use crate::registry::rules::supersedes;
use crate::registry::version::{Version, unix_millis};
use crate::registry::{Entry, EntryState, LiveState, Record};
use crate::registry::{InstanceId, ServiceName};

/// Result of [`Registry::merge_remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The entry was newer and replaced the local one.
    Applied,
    /// The local entry is as new or newer; nothing changed.
    Stale,
    /// The version's clock is more than the rules' `max_clock_drift` ahead of local time
    /// ([`crate::registry::ReplicationRules::version_from_the_future`]): refused and counted;
    /// nothing changed, the local clock included.
    FromTheFuture,
    /// The entry was newer but the store is full (`max_instances` or `max_registry_bytes`):
    /// nothing changed, and the refusal was counted and logged (see [`Registry::refusals`]).
    Refused,
}

/// Counts a remote entry refused for a clock too far ahead (the registry's and the gossip
/// replica's refusals alike).
pub(crate) fn count_from_the_future() {
    metrics::counter!("directory_replication_clock_ahead_rejected_total").increment(1);
}

impl Registry {
    /// Applies an entry from another node if its version is newer (last writer wins).
    /// An applied entry updates the change index and notifies watchers like a local write
    /// (unless it is only a renewal); a live entry's lease ends at `now + lease_remaining`.
    /// Remote live entries are charged against the same limits as local writes: one that
    /// does not fit is [`MergeOutcome::Refused`] (tombstones always fit).
    pub fn merge_remote(&self, entry: Entry, now: impl Into<Now>) -> MergeOutcome {
        let now = now.into();
        let rules = &self.inner.config.replication;
        if rules.version_from_the_future(entry.version, unix_millis(now.wall)) {
            count_from_the_future();
            tracing::warn!(service = %entry.service, instance = %entry.instance, version = entry.version.hlc, "remote entry refused: its clock is too far ahead of ours");
            return MergeOutcome::FromTheFuture;
        }
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
                if !self.admit_live(svc, entry.instance, entry.version, live, now) {
                    return MergeOutcome::Refused;
                }
            }
            EntryState::Tombstone { reason } => {
                self.store_tombstone(&mut svc, &entry.instance, entry.version, reason, now);
            }
        }
        MergeOutcome::Applied
    }

    /// Stores a live entry from elsewhere if it fits; otherwise counts and logs the refusal,
    /// changes nothing and returns false.
    pub(super) fn admit_live(
        &self,
        mut svc: RefMut<'_, ServiceName, ServiceState>,
        instance: InstanceId,
        version: Version,
        live: LiveState,
        now: Now,
    ) -> bool {
        let Err(err) = self.merge_live(&mut svc, instance, version, live, now) else {
            return true;
        };
        let service = svc.name.clone();
        drop(svc);
        self.collect_if_empty(&service);
        self.refuse_replicated(&service, &err, now.instant);
        false
    }

    fn merge_live(
        &self,
        svc: &mut ServiceState,
        instance: InstanceId,
        version: Version,
        live: LiveState,
        now: Now,
    ) -> Result<(), RegisterError> {
        let previous = svc
            .slots
            .get(&instance)
            .and_then(Slot::live_record)
            .cloned();
        let unchanged = previous.as_ref().is_some_and(|p| live.same_content_as(p));
        let mut record = Record {
            service: svc.name.clone(),
            instance,
            address: live.address,
            tags: live.tags,
            meta: live.meta,
            ttl: live.ttl,
            fingerprint: live.fingerprint,
            subscriptions: live.subscriptions,
            owner: live.owner,
            index: 0,
            registered_at: live.registered_at,
            lease_expires_at: now.wall + live.lease_remaining,
        };
        let bytes = record_bytes(&record);
        self.charge_slot(svc, &record.instance, (bytes, true), true)?;
        let (index, ticket) = self.live_index(previous.as_deref(), unchanged);
        record.index = index;
        let change = change_kind(previous.is_some(), unchanged).zip(ticket);
        if previous.is_none() {
            svc.live += 1;
        }
        let deadline = now.instant + live.lease_remaining;
        self.store_live(svc, Arc::new(record), version, deadline, change);
        Ok(())
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
