//! The timer queue: lease expiry, tombstone collection and the reaper task that drives them.
//! The queue is a [`TimerTable`](crate::timers::TimerTable), the same deadline table as the
//! gossip core's.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::journal::JournalOp;
use super::{Registry, Slot, SlotState};
use crate::registry::TombstoneReason;
use crate::registry::clock::Now;
use crate::registry::version::Version;
use crate::registry::{InstanceId, ServiceName};

/// Most timers handled by one [`Registry::reap`] call, so the reaper yields under mass expiry.
pub(crate) const REAP_BATCH: usize = 4096;
/// Longest the reaper sleeps with no timer pending (it is woken early by new timers anyway).
const REAPER_IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKind {
    LeaseExpiry,
    TombstoneCollection,
}

/// What is due at a deadline of the timer queue. Stale timers are skipped when they fire (a
/// lease timer whose deadline is not the slot's `armed` one; a collection timer whose version
/// is not the tombstone's), so writes never search the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timer {
    pub(super) kind: TimerKind,
    pub(super) service: ServiceName,
    pub(super) instance: InstanceId,
    pub(super) version: Version,
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

impl Registry {
    /// Expires leases and collects tombstones due at `now`, at most a batch at a time.
    pub fn reap(&self, now: impl Into<Now>) -> ReapStats {
        let now = now.into();
        let mut stats = ReapStats::default();
        for _ in 0..REAP_BATCH {
            let Some((deadline, timer)) = self.pop_due_timer(now.instant) else {
                return stats;
            };
            match timer.kind {
                TimerKind::LeaseExpiry => {
                    stats.expired += usize::from(self.fire_lease(deadline, &timer, now))
                }
                TimerKind::TombstoneCollection => {
                    stats.collected += usize::from(self.fire_collection(&timer));
                }
            }
        }
        stats.more = self.next_deadline().is_some_and(|d| d <= now.instant);
        stats
    }

    /// Timers on the queue, stale ones included (for tests and diagnostics).
    pub fn pending_timers(&self) -> usize {
        self.inner.timers.lock().len()
    }

    /// The earliest pending timer (possibly stale), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.inner.timers.lock().next()
    }

    /// Runs the reaper until `cancel` fires: sleeps until the earliest timer, woken early
    /// when an earlier one is added.
    pub async fn run_reaper(&self, cancel: CancellationToken) {
        loop {
            let stats = self.reap(Now::current());
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

    fn pop_due_timer(&self, now: Instant) -> Option<(Instant, Timer)> {
        self.inner.timers.lock().pop_due(now)
    }

    /// Expires the lease if the timer is the slot's armed one and the lease is over;
    /// re-arms it at the current deadline if the lease was renewed. Returns whether it expired.
    fn fire_lease(&self, fired: Instant, timer: &Timer, now: Now) -> bool {
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
        if *armed != fired {
            return false; // superseded by an earlier timer
        }
        if *deadline > now.instant {
            *armed = *deadline;
            self.push_timer(*deadline, timer.clone());
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
                s.version == timer.version && matches!(s.state, SlotState::Tombstone)
            });
            if current {
                let _ = self.charge_slot(&svc, &timer.instance, (0, false), false);
                svc.slots.remove(&timer.instance);
                self.journal(|| JournalOp::Forget {
                    service: timer.service.clone(),
                    instance: timer.instance.clone(),
                });
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
    pub(super) fn collect_if_empty(&self, service: &ServiceName) {
        self.inner
            .services
            .remove_if(service, |_, s| s.is_collectable());
    }

    pub(super) fn push_timer(&self, at: Instant, timer: Timer) {
        let mut timers = self.inner.timers.lock();
        let earliest = timers.next().is_none_or(|next| at < next);
        timers.schedule(at, timer);
        drop(timers);
        if earliest {
            self.inner.timer_added.notify_one();
        }
    }
}
