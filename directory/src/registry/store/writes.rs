//! Local writes — register, heartbeat, deregister — and the store primitives (versions,
//! indexes, live and tombstone slots) they share with replication and expiry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::time::Instant;

use super::budget::{record_bytes, tombstone_bytes};
use super::journal::JournalOp;
use super::timers::{Timer, TimerKind};
use super::{IndexTicket, Registry, ServiceState, Slot, SlotState};
use crate::registry::clock::Now;
use crate::registry::error::{HeartbeatError, RegisterError};
use crate::registry::version::{Version, unix_millis};
use crate::registry::{ChangeKind, Entry, Record, Registration, TombstoneReason};
use crate::registry::{InstanceId, ServiceName};

impl Registry {
    /// Registers or replaces an instance. Re-registering identical content only renews
    /// the lease (no change index, no event).
    pub fn register(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        registration: Registration,
        now: impl Into<Now>,
    ) -> Result<Arc<Record>, RegisterError> {
        let now = now.into();
        let mut svc = self
            .inner
            .services
            .entry(service.clone())
            .or_insert_with(|| ServiceState::new(service.clone()));
        let previous = svc.slots.get(instance).and_then(Slot::live_record).cloned();
        let wall = now.wall;
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.same_content(&registration));
        let mut record =
            self.local_record(service, instance, registration, previous.as_deref(), wall);
        let bytes = record_bytes(&record);
        if let Err(err) = self.charge_slot(&svc, instance, (bytes, true), true) {
            drop(svc);
            self.collect_if_empty(service);
            return Err(err);
        }
        let (index, ticket) = self.live_index(previous.as_deref(), unchanged);
        record.index = index;
        let record = Arc::new(record);
        let change = change_kind(previous.is_some(), unchanged).zip(ticket);
        if previous.is_none() {
            svc.live += 1;
        }
        let version = self.next_version(&svc, instance, wall);
        self.put_live(&mut svc, record.clone(), version, now.instant, change);
        metrics::counter!("directory_registrations_total").increment(1);
        Ok(record)
    }

    /// Renews an instance's lease and makes this node its owner. Bumps the version (so the
    /// renewal replicates) but not the change index, and wakes no watcher.
    pub fn heartbeat(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        now: impl Into<Now>,
    ) -> Result<Arc<Record>, HeartbeatError> {
        let now = now.into();
        let not_found = || HeartbeatError::NotFound {
            service: service.clone(),
            instance: instance.clone(),
        };
        let mut svc = self.inner.services.get_mut(service).ok_or_else(not_found)?;
        let (previous, deadline) = match svc.slots.get(instance).map(|s| &s.state) {
            Some(SlotState::Live {
                record, deadline, ..
            }) => (record.clone(), *deadline),
            _ => return Err(not_found()),
        };
        if deadline <= now.instant {
            // The reaper has not run yet, but the lease is over: expire now, consistently.
            self.put_tombstone(&mut svc, instance, TombstoneReason::Expired, now);
            return Err(not_found());
        }
        let record = Arc::new(Record {
            owner: self.inner.config.node.clone(),
            lease_expires_at: now.wall + previous.ttl.duration(),
            ..(*previous).clone()
        });
        // A renewal may change the owner's name, never refused over a few bytes.
        let _ = self.charge_slot(&svc, instance, (record_bytes(&record), true), false);
        let version = self.next_version(&svc, instance, now.wall);
        self.put_live(&mut svc, record.clone(), version, now.instant, None);
        Ok(record)
    }

    /// Removes an instance. Returns whether it was live; removing an absent instance is a
    /// no-op (idempotent) and leaves no tombstone.
    pub fn deregister(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        now: impl Into<Now>,
    ) -> bool {
        let Some(mut svc) = self.inner.services.get_mut(service) else {
            return false;
        };
        let live = svc
            .slots
            .get(instance)
            .is_some_and(|s| s.live_record().is_some());
        if live {
            self.put_tombstone(
                &mut svc,
                instance,
                TombstoneReason::Deregistered,
                now.into(),
            );
            metrics::counter!("directory_deregistrations_total").increment(1);
        }
        live
    }

    /// The record a local registration makes (its change index is set once admitted).
    fn local_record(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        registration: Registration,
        previous: Option<&Record>,
        wall: SystemTime,
    ) -> Record {
        Record {
            service: service.clone(),
            instance: instance.clone(),
            address: registration.address,
            tags: registration.tags,
            meta: registration.meta,
            ttl: registration.ttl,
            fingerprint: registration.fingerprint,
            subscriptions: registration.subscriptions,
            owner: self.inner.config.node.clone(),
            index: 0,
            registered_at: previous.map_or(wall, |p| p.registered_at),
            lease_expires_at: wall + registration.ttl.duration(),
        }
    }

    pub(super) fn next_revision(&self) -> u64 {
        self.inner.revision.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The index of a live write and, for a visible change, its ticket: a fresh index, or
    /// the previous record's for a write that changes nothing visible (a renewal).
    pub(super) fn live_index(
        &self,
        previous: Option<&Record>,
        unchanged: bool,
    ) -> (u64, Option<IndexTicket<'_>>) {
        match previous {
            Some(p) if unchanged => (p.index, None),
            _ => {
                let ticket = self.next_index();
                (ticket.index(), Some(ticket))
            }
        }
    }

    /// The next change index, holding the sequencing lock until its event is published.
    pub(super) fn next_index(&self) -> IndexTicket<'_> {
        let mut log = self.inner.log.lock();
        let index = log.next_index();
        self.inner.index.store(index, Ordering::Release);
        IndexTicket { log, index }
    }

    /// A version for a local write: from the clock, and above the slot's current version
    /// even if that came from a node whose clock runs ahead.
    pub(super) fn next_version(
        &self,
        svc: &ServiceState,
        instance: &InstanceId,
        wall: SystemTime,
    ) -> Version {
        if let Some(slot) = svc.slots.get(instance) {
            self.inner.hlc.observe(slot.version.hlc);
        }
        Version {
            hlc: self.inner.hlc.tick(unix_millis(wall)),
            node: self.inner.node_id,
        }
    }

    /// Stores a local live write and replicates it.
    pub(super) fn put_live(
        &self,
        svc: &mut ServiceState,
        record: Arc<Record>,
        version: Version,
        now: Instant,
        change: Option<(ChangeKind, IndexTicket<'_>)>,
    ) {
        let ttl = record.ttl.duration();
        if let Some(tx) = &self.inner.replication {
            let _ = tx.send(Entry::live(&record, version, ttl));
        }
        self.store_live(svc, record, version, now + ttl, change);
    }

    pub(super) fn store_live(
        &self,
        svc: &mut ServiceState,
        record: Arc<Record>,
        version: Version,
        deadline: Instant,
        change: Option<(ChangeKind, IndexTicket<'_>)>,
    ) {
        let instance = record.instance.clone();
        let armed = match svc.slots.get(&instance).map(|s| &s.state) {
            // The armed timer fires no later than the new deadline and will re-arm.
            Some(SlotState::Live { armed, .. }) if *armed <= deadline => *armed,
            _ => {
                self.push_timer(
                    deadline,
                    Timer {
                        kind: TimerKind::LeaseExpiry,
                        service: svc.name.clone(),
                        instance: instance.clone(),
                        version,
                    },
                );
                deadline
            }
        };
        let state = SlotState::Live {
            record: record.clone(),
            deadline,
            armed,
        };
        let bytes = record_bytes(&record);
        let slot = Slot {
            version,
            state,
            bytes,
        };
        svc.slots.insert(instance.clone(), slot);
        self.journal(|| JournalOp::Live {
            expires_at: record.lease_expires_at,
            record: record.clone(),
            version,
        });
        svc.revision = self.next_revision();
        if let Some((kind, ticket)) = change {
            svc.mark_changed(record.index);
            self.emit(ticket, kind, &svc.name, &instance, Some(record));
        }
    }

    /// Turns a live slot into a tombstone as a local write and replicates it.
    pub(super) fn put_tombstone(
        &self,
        svc: &mut ServiceState,
        instance: &InstanceId,
        reason: TombstoneReason,
        now: Now,
    ) {
        let version = self.next_version(svc, instance, now.wall);
        if let Some(tx) = &self.inner.replication {
            let _ = tx.send(Entry::tombstone(&svc.name, instance, version, reason));
        }
        self.store_tombstone(svc, instance, version, reason, now);
    }

    pub(super) fn store_tombstone(
        &self,
        svc: &mut ServiceState,
        instance: &InstanceId,
        version: Version,
        reason: TombstoneReason,
        now: Now,
    ) {
        let bytes = tombstone_bytes(&svc.name, instance.as_str());
        // Never refused: refusing a deletion could bring the instance back.
        let _ = self.charge_slot(svc, instance, (bytes, false), false);
        let state = SlotState::Tombstone;
        let slot = Slot {
            version,
            state,
            bytes,
        };
        let previous = svc.slots.insert(instance.clone(), slot);
        svc.revision = self.next_revision();
        self.journal(|| JournalOp::Tombstone {
            service: svc.name.clone(),
            instance: instance.clone(),
            version,
            reason,
            written_at: now.wall,
        });
        let collect_at = self
            .inner
            .config
            .replication
            .forget_tombstone_at(now.instant);
        self.push_timer(
            collect_at,
            Timer {
                kind: TimerKind::TombstoneCollection,
                service: svc.name.clone(),
                instance: instance.clone(),
                version,
            },
        );
        if previous.is_some_and(|p| p.live_record().is_some()) {
            svc.live -= 1;
            let ticket = self.next_index();
            svc.mark_changed(ticket.index());
            self.emit(ticket, reason.into(), &svc.name, instance, None);
        }
    }
}

pub(super) fn change_kind(was_live: bool, unchanged: bool) -> Option<ChangeKind> {
    match (was_live, unchanged) {
        (false, _) => Some(ChangeKind::Registered),
        (true, false) => Some(ChangeKind::Updated),
        (true, true) => None,
    }
}
