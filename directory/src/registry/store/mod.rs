//! The concurrent store: per-service state in a [`DashMap`], leases and tombstones on one
//! timer queue, change index, blocking waits, watch events and the replication hook.
//!
//! Layout (all of it `impl Registry`, split by concern):
//! - this module — the shared state ([`Registry`], per-service state, slots) and accessors;
//! - `writes` — local writes (register, heartbeat, deregister) and the store primitives they
//!   share with replication;
//! - `lookup` — reads ([`Filter`], [`ServiceView`], the catalog);
//! - `timers` — the timer queue: lease expiry, tombstone collection, the reaper task;
//! - `replication` — merging remote entries (the winner is chosen by `registry::rules`);
//! - `topics` — the topic index (which groups subscribe to a topic), fed by every change;
//! - `waits` — blocking waits on a service's change index and the watch event stream;
//! - `history` — the bounded, index-ordered history resumed watches replay from.

mod budget;
mod history;
mod journal;
mod lookup;
mod replication;
mod restore;
mod timers;
mod topics;
mod waits;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::registry::config::RegistryConfig;
use crate::registry::version::{Hlc, Version};
use crate::registry::{ChangeEvent, Entry, Record};
use crate::registry::{InstanceId, ServiceName};
use crate::timers::TimerTable;

use budget::Budget;
pub use budget::{Refusals, SLOT_OVERHEAD_BYTES, Usage};
use history::ChangeLog;
pub use history::Replay;
pub use journal::{Durable, Journal, JournalEntry, JournalOp, NotDurable};
pub use lookup::{Filter, ServiceSummary, ServiceView};
pub use replication::MergeOutcome;
pub(crate) use replication::count_from_the_future;
pub use restore::{RestoreStats, Restored};
#[cfg(test)]
pub(crate) use timers::REAP_BATCH;
pub use timers::ReapStats;
use timers::Timer;

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
    /// Last change index handed out (global, shared by all services); a copy of the
    /// history's, readable without its lock.
    index: AtomicU64,
    /// Hands out change indexes and holds the recent events. A write keeps it locked from
    /// taking an index to publishing the event ([`IndexTicket`]), so events reach the
    /// history and the watchers in index order. Lock order: service shard, then this, then
    /// `timers`.
    log: Mutex<ChangeLog>,
    /// Carries the global change index to blocking queries on the catalog.
    changed: watch::Sender<u64>,
    /// Last revision handed out (global, so a revision is never reused by a service
    /// whose state was collected and created again).
    revision: AtomicU64,
    /// Live instances and estimated bytes in the whole store, against their limits.
    budget: Budget,
    timers: Mutex<TimerTable<Instant, Timer>>,
    timer_added: Notify,
    events: broadcast::Sender<ChangeEvent>,
    /// Subscriptions of live instances by pattern and group. Lock order: after `log`.
    topics: Mutex<topics::TopicIndex>,
    /// Change index of the last change to `topics`, for blocking topic queries.
    topics_changed: watch::Sender<u64>,
    replication: Option<mpsc::UnboundedSender<Entry>>,
    journal: Option<Journal>,
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
    /// What the slot is charged in the budget (see `budget`).
    bytes: usize,
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
    /// Removed; kept (invisible) so older copies arriving later are refused.
    Tombstone,
}

impl Registry {
    /// An empty registry without a replication hook.
    pub fn new(config: RegistryConfig) -> Self {
        Self::with_hooks(config, None, None)
    }

    /// An empty registry that sends every local write (register, heartbeat, deregister,
    /// expiry) as an [`Entry`] to `replication`. Writes merged from other nodes are not sent.
    pub fn with_replication(
        config: RegistryConfig,
        replication: mpsc::UnboundedSender<Entry>,
    ) -> Self {
        Self::with_hooks(config, Some(replication), None)
    }

    /// An empty registry with either hook: `replication` gets every local write (see
    /// [`Self::with_replication`]), `journal` every change of a slot, local or replicated,
    /// to persist it (see `crate::persist`).
    pub fn with_hooks(
        config: RegistryConfig,
        replication: Option<mpsc::UnboundedSender<Entry>>,
        journal: Option<Journal>,
    ) -> Self {
        let (events, _) = broadcast::channel(config.event_buffer.get());
        let history = ChangeLog::new(config.event_buffer.get());
        let inner = Inner {
            budget: Budget::new(config.max_instances, config.max_registry_bytes),
            node_id: config.node.id(),
            config,
            services: DashMap::new(),
            hlc: Hlc::new(),
            index: AtomicU64::new(0),
            revision: AtomicU64::new(0),
            timers: Mutex::new(TimerTable::default()),
            timer_added: Notify::new(),
            log: Mutex::new(history),
            changed: watch::Sender::new(0),
            events,
            topics: Mutex::default(),
            topics_changed: watch::Sender::new(0),
            replication,
            journal,
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
        self.inner.budget.usage().instances
    }

    /// Whether no instance is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last change index handed out, across all services.
    pub fn index(&self) -> u64 {
        self.inner.index.load(Ordering::Acquire)
    }
}

/// A change index taken under the sequencing lock, which it holds until the event carrying
/// the index is published ([`Registry::emit`]). Dropped unpublished, the index stays unused.
pub(super) struct IndexTicket<'a> {
    log: MutexGuard<'a, ChangeLog>,
    index: u64,
}

impl IndexTicket<'_> {
    /// The change index this ticket stands for.
    pub(super) fn index(&self) -> u64 {
        self.index
    }
}

impl Slot {
    fn live_record(&self) -> Option<&Arc<Record>> {
        match &self.state {
            SlotState::Live { record, .. } => Some(record),
            SlotState::Tombstone => None,
        }
    }
}
