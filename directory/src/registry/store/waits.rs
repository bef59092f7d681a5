//! Blocking waits on a service's (or the catalog's) change index, the stream of watch
//! events and the replay of recent ones.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{IndexTicket, Registry, Replay, ServiceState};
use crate::registry::{ChangeEvent, ChangeKind, Record};
use crate::registry::{InstanceId, ServiceName};

impl Registry {
    /// Subscribes to user-visible changes. A receiver that falls more than the configured
    /// event buffer behind gets `Lagged` and should resynchronise with a lookup.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
    }

    /// Subscribes to changes after index `after`: the changes already made since then
    /// (from the bounded history, or [`Replay::Gap`] when it no longer reaches back), and a
    /// receiver of every change after the returned current index, with nothing lost or
    /// repeated in between. Without `after`, only later changes.
    pub fn subscribe_after(
        &self,
        after: Option<u64>,
    ) -> (Replay, u64, broadcast::Receiver<ChangeEvent>) {
        let log = self.inner.log.lock();
        let replay = after.map_or(Replay::Events(Vec::new()), |after| log.since(after));
        (replay, log.last(), self.inner.events.subscribe())
    }

    /// The changes after index `after` still in the history (for a watcher that lagged).
    pub fn changes_since(&self, after: u64) -> Replay {
        self.inner.log.lock().since(after)
    }

    /// Waits until the global change index (the catalog's) exceeds `after` or `deadline`
    /// passes; returns the index at that point.
    pub async fn wait_for_any_change(&self, after: u64, deadline: Instant) -> u64 {
        let mut rx = self.inner.changed.subscribe();
        // The sender lives as long as the registry, which `self` keeps alive.
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|i| *i > after)).await;
        *rx.borrow()
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

    /// How many [`Self::wait_for_change`] calls are parked on `service` right now (lets
    /// tests know a blocking query is in place before they make the change it waits for).
    pub fn waiters(&self, service: &ServiceName) -> usize {
        self.inner
            .services
            .get(service)
            .map_or(0, |s| s.changed.receiver_count())
    }

    /// Raises the change index to at least `index` (a restart restoring its state): the
    /// history then starts there, so a watch resuming from before it gets a gap.
    pub(super) fn raise_index(&self, index: u64) {
        let mut log = self.inner.log.lock();
        log.raise_to(index);
        self.inner
            .index
            .store(log.last(), std::sync::atomic::Ordering::Release);
    }

    /// Publishes the change `ticket` stands for: to the history, the catalog's blocking
    /// queries and the watchers, then releases the sequencing lock.
    pub(super) fn emit(
        &self,
        mut ticket: IndexTicket<'_>,
        kind: ChangeKind,
        service: &ServiceName,
        instance: &InstanceId,
        record: Option<Arc<Record>>,
    ) {
        let event = ChangeEvent {
            kind,
            service: service.clone(),
            instance: instance.clone(),
            index: ticket.index,
            record,
        };
        let key = (service.clone(), instance.clone());
        self.index_topics(key, event.record.as_ref(), ticket.index);
        ticket.log.push(event.clone());
        self.inner.changed.send_replace(ticket.index);
        // No receiver is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }
}
