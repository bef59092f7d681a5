//! Blocking waits on a service's change index and the stream of watch events.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Registry, ServiceState};
use crate::registry::{ChangeEvent, ChangeKind, Record};
use crate::registry::{InstanceId, ServiceName};

impl Registry {
    /// Subscribes to user-visible changes. A receiver that falls more than the configured
    /// event buffer behind gets `Lagged` and should resynchronise with a lookup.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
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

    pub(super) fn emit(
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
