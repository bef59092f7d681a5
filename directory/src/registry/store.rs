//! The concurrent store: per-service state in a [`DashMap`], leases and tombstones on one
//! timer queue, change index, blocking waits, watch events and the replication hook.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::RegistryConfig;
use super::entry::{
    ChangeEvent, ChangeKind, Entry, EntryState, LiveState, Record, Registration, TombstoneReason,
};
use super::error::{HeartbeatError, RegisterError};
use super::names::{InstanceId, ServiceName};
use super::version::{Hlc, Version, unix_millis};

/// Most timers handled by one [`Registry::reap`] call, so the reaper yields under mass expiry.
const REAP_BATCH: usize = 4096;
/// Longest the reaper sleeps with no timer pending (it is woken early by new timers anyway).
const REAPER_IDLE: Duration = Duration::from_secs(60);

/// The in-memory service registry of one directory node. Cheap to clone (an `Arc` inside).
///
/// Driving it: writes ([`register`](Self::register), [`heartbeat`](Self::heartbeat),
/// [`deregister`](Self::deregister), [`merge_remote`](Self::merge_remote)) and
/// [`reap`](Self::reap) take the current monotonic time as an argument. A server runs
/// [`run_reaper`](Self::run_reaper) as a task; tests can call `reap(now)` directly.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    node_id: u64,
    services: DashMap<ServiceName, ServiceState>,
    hlc: Hlc,
    /// Last change index handed out (global, shared by all services).
    index: AtomicU64,
    /// Last revision handed out (global, so a revision is never reused by a service
    /// whose state was collected and created again).
    revision: AtomicU64,
    /// Live instances in the whole store.
    live: AtomicUsize,
    timers: Mutex<BinaryHeap<Reverse<Timer>>>,
    timer_added: Notify,
    events: broadcast::Sender<ChangeEvent>,
    replication: Option<mpsc::UnboundedSender<Entry>>,
}

/// Everything about one service. A lookup locks only this (one dashmap shard).
struct ServiceState {
    name: ServiceName,
    /// Change index of the service's last user-visible change (0 if none yet).
    index: u64,
    /// Bumped on every mutation, renewals included; keys caches of rendered lookups.
    revision: u64,
    live: usize,
    slots: BTreeMap<InstanceId, Slot>,
    /// Carries `index` to blocking queries.
    changed: watch::Sender<u64>,
}

impl ServiceState {
    fn new(name: ServiceName) -> Self {
        Self {
            name,
            index: 0,
            revision: 0,
            live: 0,
            slots: BTreeMap::new(),
            changed: watch::Sender::new(0),
        }
    }

    /// Whether the state holds nothing and nobody waits on it, so it can be dropped.
    fn is_collectable(&self) -> bool {
        self.slots.is_empty() && self.changed.receiver_count() == 0
    }

    fn mark_changed(&mut self, index: u64) {
        self.index = index;
        self.changed.send_replace(index);
    }
}

struct Slot {
    version: Version,
    state: SlotState,
}

enum SlotState {
    /// `armed` is the deadline of the one lease timer that stands for this slot on the
    /// queue. Renewals only move `deadline`; when the armed timer fires early it is re-armed
    /// at the current deadline, so a slot has one timer however often it is renewed.
    Live {
        record: Arc<Record>,
        deadline: Instant,
        armed: Instant,
    },
    Tombstone {
        reason: TombstoneReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    LeaseExpiry,
    TombstoneCollection,
}

/// A deadline on the timer queue. Stale timers are skipped when they fire (a lease timer
/// whose deadline is not the slot's `armed` one; a collection timer whose version is not the
/// tombstone's), so writes never search the queue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    kind: TimerKind,
    service: ServiceName,
    instance: InstanceId,
    version: Version,
}

/// A service's live instances at one index.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// The service's change index (0 if the service is unknown).
    pub index: u64,
    /// Changes on every mutation including renewals; a rendered response cached under
    /// `(service, revision)` is still exact.
    pub revision: u64,
    /// Live instances, sorted by instance id.
    pub instances: Vec<Arc<Record>>,
}

/// Instance filters for lookups: every tag must be present and every meta pair must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Tags that must all be present.
    pub tags: Vec<String>,
    /// `(key, value)` pairs that must all match.
    pub meta: Vec<(String, String)>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.meta.is_empty()
    }

    /// Whether `record` passes.
    pub fn matches(&self, record: &Record) -> bool {
        record.tags.contains_all(&self.tags)
            && self
                .meta
                .iter()
                .all(|(k, v)| record.meta.get(k) == Some(v.as_str()))
    }
}

/// One service in the catalog listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    /// The service.
    pub service: ServiceName,
    /// How many live instances it has.
    pub instances: usize,
}

/// What one [`Registry::reap`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapStats {
    /// Leases that ran out.
    pub expired: usize,
    /// Tombstones dropped after their retention.
    pub collected: usize,
    /// Whether due timers remain (the batch limit was hit).
    pub more: bool,
}

/// Result of [`Registry::merge_remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The entry was newer and replaced the local one.
    Applied,
    /// The local entry is as new or newer; nothing changed.
    Stale,
}

impl Registry {
    /// An empty registry without a replication hook.
    pub fn new(config: RegistryConfig) -> Self {
        Self::build(config, None)
    }

    /// An empty registry that sends every local write (register, heartbeat, deregister,
    /// expiry) as an [`Entry`] to `replication`. Writes merged from other nodes are not sent.
    pub fn with_replication(
        config: RegistryConfig,
        replication: mpsc::UnboundedSender<Entry>,
    ) -> Self {
        Self::build(config, Some(replication))
    }

    fn build(config: RegistryConfig, replication: Option<mpsc::UnboundedSender<Entry>>) -> Self {
        let (events, _) = broadcast::channel(config.event_buffer.get());
        let inner = Inner {
            node_id: config.node.id(),
            config,
            services: DashMap::new(),
            hlc: Hlc::new(),
            index: AtomicU64::new(0),
            revision: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            timers: Mutex::new(BinaryHeap::new()),
            timer_added: Notify::new(),
            events,
            replication,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The configuration this registry runs with.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Live instances in the store.
    pub fn len(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Whether no instance is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last change index handed out, across all services.
    pub fn index(&self) -> u64 {
        self.inner.index.load(Ordering::Acquire)
    }

    /// Subscribes to user-visible changes. A receiver that falls more than the configured
    /// event buffer behind gets `Lagged` and should resynchronise with a lookup.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
    }

    /// Registers or replaces an instance. Re-registering identical content only renews
    /// the lease (no change index, no event).
    pub fn register(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        registration: Registration,
        now: Instant,
    ) -> Result<Arc<Record>, RegisterError> {
        let mut svc = self
            .inner
            .services
            .entry(service.clone())
            .or_insert_with(|| ServiceState::new(service.clone()));
        let previous = svc.slots.get(instance).and_then(Slot::live_record).cloned();
        if previous.is_none() && !self.reserve_capacity() {
            drop(svc);
            self.collect_if_empty(service);
            return Err(RegisterError::CapacityFull {
                max: self.inner.config.max_instances,
            });
        }
        let wall = SystemTime::now();
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.same_content(&registration));
        let index = match &previous {
            Some(p) if unchanged => p.index,
            _ => self.next_index(),
        };
        let record = Arc::new(Record {
            service: service.clone(),
            instance: instance.clone(),
            address: registration.address,
            tags: registration.tags,
            meta: registration.meta,
            ttl: registration.ttl,
            fingerprint: registration.fingerprint,
            owner: self.inner.config.node.clone(),
            index,
            registered_at: previous.as_ref().map_or(wall, |p| p.registered_at),
            lease_expires_at: wall + registration.ttl.duration(),
        });
        let kind = change_kind(previous.is_some(), unchanged);
        if previous.is_none() {
            svc.live += 1;
        }
        let version = self.next_version(&svc, instance, wall);
        self.put_live(&mut svc, record.clone(), version, now, kind);
        metrics::counter!("directory_registrations_total").increment(1);
        Ok(record)
    }

    /// Renews an instance's lease and makes this node its owner. Bumps the version (so the
    /// renewal replicates) but not the change index, and wakes no watcher.
    pub fn heartbeat(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        now: Instant,
    ) -> Result<Arc<Record>, HeartbeatError> {
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
        if deadline <= now {
            // The reaper has not run yet, but the lease is over: expire now, consistently.
            self.put_tombstone(&mut svc, instance, TombstoneReason::Expired, now);
            return Err(not_found());
        }
        let wall = SystemTime::now();
        let record = Arc::new(Record {
            owner: self.inner.config.node.clone(),
            lease_expires_at: wall + previous.ttl.duration(),
            ..(*previous).clone()
        });
        let version = self.next_version(&svc, instance, wall);
        self.put_live(&mut svc, record.clone(), version, now, None);
        Ok(record)
    }

    /// Removes an instance. Returns whether it was live; removing an absent instance is a
    /// no-op (idempotent) and leaves no tombstone.
    pub fn deregister(&self, service: &ServiceName, instance: &InstanceId, now: Instant) -> bool {
        let Some(mut svc) = self.inner.services.get_mut(service) else {
            return false;
        };
        let live = svc
            .slots
            .get(instance)
            .is_some_and(|s| s.live_record().is_some());
        if live {
            self.put_tombstone(&mut svc, instance, TombstoneReason::Deregistered, now);
            metrics::counter!("directory_deregistrations_total").increment(1);
        }
        live
    }

    /// The live instances of `service` passing `filter`. An unknown service is empty with
    /// index 0.
    pub fn lookup(&self, service: &ServiceName, filter: &Filter) -> ServiceView {
        let Some(svc) = self.inner.services.get(service) else {
            return ServiceView {
                index: 0,
                revision: 0,
                instances: Vec::new(),
            };
        };
        let instances = svc
            .slots
            .values()
            .filter_map(Slot::live_record)
            .filter(|r| filter.is_empty() || filter.matches(r))
            .cloned()
            .collect();
        ServiceView {
            index: svc.index,
            revision: svc.revision,
            instances,
        }
    }

    /// `(index, revision)` of a service without copying its instances (for response caches).
    pub fn service_revision(&self, service: &ServiceName) -> (u64, u64) {
        self.inner
            .services
            .get(service)
            .map_or((0, 0), |s| (s.index, s.revision))
    }

    /// One live instance.
    pub fn instance(&self, service: &ServiceName, instance: &InstanceId) -> Option<Arc<Record>> {
        let svc = self.inner.services.get(service)?;
        svc.slots.get(instance).and_then(Slot::live_record).cloned()
    }

    /// Every service with at least one live instance, sorted by name, and the global index.
    pub fn services(&self) -> (u64, Vec<ServiceSummary>) {
        let index = self.index();
        let mut list: Vec<ServiceSummary> = self
            .inner
            .services
            .iter()
            .filter(|s| s.live > 0)
            .map(|s| ServiceSummary {
                service: s.key().clone(),
                instances: s.live,
            })
            .collect();
        list.sort_unstable_by(|a, b| a.service.cmp(&b.service));
        (index, list)
    }

    /// Waits until the service's change index exceeds `after` or `deadline` passes; returns
    /// the service's index at that point. Works for services that do not exist yet.
    pub async fn wait_for_change(
        &self,
        service: &ServiceName,
        after: u64,
        deadline: Instant,
    ) -> u64 {
        let mut rx = {
            let svc = self
                .inner
                .services
                .entry(service.clone())
                .or_insert_with(|| ServiceState::new(service.clone()));
            svc.changed.subscribe()
        };
        // The sender lives in the state, which is not collected while we hold a receiver,
        // so `wait_for` can only end by the predicate or the timeout; either way the
        // current value is the answer.
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|i| *i > after)).await;
        let index = *rx.borrow();
        drop(rx);
        self.collect_if_empty(service);
        index
    }

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
                self.merge_tombstone(&mut svc, &entry.instance, entry.version, reason, now)
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

    fn merge_tombstone(
        &self,
        svc: &mut ServiceState,
        instance: &InstanceId,
        version: Version,
        reason: TombstoneReason,
        now: Instant,
    ) {
        self.store_tombstone(svc, instance, version, reason, now);
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

    /// Expires leases and collects tombstones due at `now`, at most a batch at a time.
    pub fn reap(&self, now: Instant) -> ReapStats {
        let mut stats = ReapStats::default();
        for _ in 0..REAP_BATCH {
            let Some(timer) = self.pop_due_timer(now) else {
                return stats;
            };
            match timer.kind {
                TimerKind::LeaseExpiry => {
                    stats.expired += usize::from(self.fire_lease(&timer, now))
                }
                TimerKind::TombstoneCollection => {
                    stats.collected += usize::from(self.fire_collection(&timer));
                }
            }
        }
        stats.more = self.next_deadline().is_some_and(|d| d <= now);
        stats
    }

    /// Timers on the queue, stale ones included (for tests and diagnostics).
    pub fn pending_timers(&self) -> usize {
        self.inner.timers.lock().len()
    }

    /// The earliest pending timer (possibly stale), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.inner.timers.lock().peek().map(|Reverse(t)| t.deadline)
    }

    /// Runs the reaper until `cancel` fires: sleeps until the earliest timer, woken early
    /// when an earlier one is added.
    pub async fn run_reaper(&self, cancel: CancellationToken) {
        loop {
            let stats = self.reap(Instant::now());
            if stats.more {
                tokio::task::yield_now().await;
                continue;
            }
            let wake_at = self
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + REAPER_IDLE);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.inner.timer_added.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    fn pop_due_timer(&self, now: Instant) -> Option<Timer> {
        let mut timers = self.inner.timers.lock();
        match timers.peek() {
            Some(Reverse(t)) if t.deadline <= now => timers.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }

    /// Expires the lease if the timer is the slot's armed one and the lease is over;
    /// re-arms it at the current deadline if the lease was renewed. Returns whether it expired.
    fn fire_lease(&self, timer: &Timer, now: Instant) -> bool {
        let Some(mut svc) = self.inner.services.get_mut(&timer.service) else {
            return false;
        };
        let Some(Slot {
            state: SlotState::Live {
                deadline, armed, ..
            },
            ..
        }) = svc.slots.get_mut(&timer.instance)
        else {
            return false;
        };
        if *armed != timer.deadline {
            return false; // superseded by an earlier timer
        }
        if *deadline > now {
            *armed = *deadline;
            let rearmed = Timer {
                deadline: *deadline,
                ..timer.clone()
            };
            self.push_timer(rearmed);
            return false;
        }
        self.put_tombstone(&mut svc, &timer.instance, TombstoneReason::Expired, now);
        metrics::counter!("directory_expirations_total").increment(1);
        true
    }

    /// Drops the tombstone if the timer is still current. Returns whether it did.
    fn fire_collection(&self, timer: &Timer) -> bool {
        let removed = {
            let Some(mut svc) = self.inner.services.get_mut(&timer.service) else {
                return false;
            };
            let current = svc.slots.get(&timer.instance).is_some_and(|s| {
                s.version == timer.version && matches!(s.state, SlotState::Tombstone { .. })
            });
            if current {
                svc.slots.remove(&timer.instance);
                svc.revision = self.next_revision();
            }
            current
        };
        if removed {
            self.collect_if_empty(&timer.service);
        }
        removed
    }

    /// Drops a service's state if it holds nothing and nobody waits on it.
    fn collect_if_empty(&self, service: &ServiceName) {
        self.inner
            .services
            .remove_if(service, |_, s| s.is_collectable());
    }

    /// Takes one unit of capacity; false when the store is full.
    fn reserve_capacity(&self) -> bool {
        let max = self.inner.config.max_instances;
        self.inner
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn next_revision(&self) -> u64 {
        self.inner.revision.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn next_index(&self) -> u64 {
        self.inner.index.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A version for a local write: from the clock, and above the slot's current version
    /// even if that came from a node whose clock runs ahead.
    fn next_version(&self, svc: &ServiceState, instance: &InstanceId, wall: SystemTime) -> Version {
        if let Some(slot) = svc.slots.get(instance) {
            self.inner.hlc.observe(slot.version.hlc);
        }
        Version {
            hlc: self.inner.hlc.tick(unix_millis(wall)),
            node: self.inner.node_id,
        }
    }

    /// Stores a local live write and replicates it.
    fn put_live(
        &self,
        svc: &mut ServiceState,
        record: Arc<Record>,
        version: Version,
        now: Instant,
        kind: Option<ChangeKind>,
    ) {
        let ttl = record.ttl.duration();
        if let Some(tx) = &self.inner.replication {
            let _ = tx.send(Entry::live(&record, version, ttl));
        }
        self.store_live(svc, record, version, now + ttl, kind);
    }

    fn store_live(
        &self,
        svc: &mut ServiceState,
        record: Arc<Record>,
        version: Version,
        deadline: Instant,
        kind: Option<ChangeKind>,
    ) {
        let instance = record.instance.clone();
        let armed = match svc.slots.get(&instance).map(|s| &s.state) {
            // The armed timer fires no later than the new deadline and will re-arm.
            Some(SlotState::Live { armed, .. }) if *armed <= deadline => *armed,
            _ => {
                self.push_timer(Timer {
                    deadline,
                    kind: TimerKind::LeaseExpiry,
                    service: svc.name.clone(),
                    instance: instance.clone(),
                    version,
                });
                deadline
            }
        };
        let state = SlotState::Live {
            record: record.clone(),
            deadline,
            armed,
        };
        svc.slots.insert(instance.clone(), Slot { version, state });
        svc.revision = self.next_revision();
        if let Some(kind) = kind {
            svc.mark_changed(record.index);
            self.emit(kind, &svc.name, &instance, record.index, Some(record));
        }
    }

    /// Turns a live slot into a tombstone as a local write and replicates it.
    fn put_tombstone(
        &self,
        svc: &mut ServiceState,
        instance: &InstanceId,
        reason: TombstoneReason,
        now: Instant,
    ) {
        let version = self.next_version(svc, instance, SystemTime::now());
        if let Some(tx) = &self.inner.replication {
            let _ = tx.send(Entry {
                service: svc.name.clone(),
                instance: instance.clone(),
                version,
                state: EntryState::Tombstone { reason },
            });
        }
        self.store_tombstone(svc, instance, version, reason, now);
    }

    fn store_tombstone(
        &self,
        svc: &mut ServiceState,
        instance: &InstanceId,
        version: Version,
        reason: TombstoneReason,
        now: Instant,
    ) {
        let state = SlotState::Tombstone { reason };
        let previous = svc.slots.insert(instance.clone(), Slot { version, state });
        svc.revision = self.next_revision();
        let collect_at = now + self.inner.config.tombstone_retention;
        self.push_timer(Timer {
            deadline: collect_at,
            kind: TimerKind::TombstoneCollection,
            service: svc.name.clone(),
            instance: instance.clone(),
            version,
        });
        if previous.is_some_and(|p| p.live_record().is_some()) {
            svc.live -= 1;
            self.inner.live.fetch_sub(1, Ordering::AcqRel);
            let index = self.next_index();
            svc.mark_changed(index);
            self.emit(reason.into(), &svc.name, instance, index, None);
        }
    }

    fn push_timer(&self, timer: Timer) {
        let mut timers = self.inner.timers.lock();
        let earliest = timers
            .peek()
            .is_none_or(|Reverse(t)| timer.deadline < t.deadline);
        timers.push(Reverse(timer));
        drop(timers);
        if earliest {
            self.inner.timer_added.notify_one();
        }
    }

    fn emit(
        &self,
        kind: ChangeKind,
        service: &ServiceName,
        instance: &InstanceId,
        index: u64,
        record: Option<Arc<Record>>,
    ) {
        // No receiver is fine: nobody is watching.
        let _ = self.inner.events.send(ChangeEvent {
            kind,
            service: service.clone(),
            instance: instance.clone(),
            index,
            record,
        });
    }
}

fn change_kind(was_live: bool, unchanged: bool) -> Option<ChangeKind> {
    match (was_live, unchanged) {
        (false, _) => Some(ChangeKind::Registered),
        (true, false) => Some(ChangeKind::Updated),
        (true, true) => None,
    }
}

impl Slot {
    fn live_record(&self) -> Option<&Arc<Record>> {
        match &self.state {
            SlotState::Live { record, .. } => Some(record),
            SlotState::Tombstone { .. } => None,
        }
    }

    fn to_entry(&self, service: &ServiceName, instance: &InstanceId, now: Instant) -> Entry {
        match &self.state {
            SlotState::Live {
                record, deadline, ..
            } => Entry::live(
                record,
                self.version,
                deadline.saturating_duration_since(now),
            ),
            SlotState::Tombstone { reason } => Entry {
                service: service.clone(),
                instance: instance.clone(),
                version: self.version,
                state: EntryState::Tombstone { reason: *reason },
            },
        }
    }
}
