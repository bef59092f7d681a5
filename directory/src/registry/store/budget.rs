//! The store's capacity, charged in one place: how many live instances it holds and an
//! estimate of the bytes every slot (live or tombstone) takes. Local and replicated writes
//! are charged alike; only live writes can be refused, never a tombstone (refusing a
//! deletion could bring a removed instance back).
//!
//! A replicated entry the store cannot take is counted, reported by [`Registry::refusals`]
//! (which `/v1/health` shows) and logged at most once per [`REFUSAL_LOG_INTERVAL`].

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::registry::error::RegisterError;
use crate::registry::{InstanceId, Record, ServiceName};

use super::{Registry, ServiceState, Slot};

/// Fixed bytes charged per slot besides its strings: the record and slot structs, the
/// `Arc`, map nodes in the service's `BTreeMap` and the dashmap, the timer-queue entry and
/// the gossip replica's copy of the key and version. Measured roughly with RSS under
/// 100,000 small records (about 600 bytes per instance); the estimate errs on the high side.
pub const SLOT_OVERHEAD_BYTES: usize = 512;
/// Bytes charged per tag or meta pair besides its text (a `String` header each).
const ITEM_OVERHEAD_BYTES: usize = 24;
/// How often, at most, a refused replicated entry is logged (the rest are counted).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The estimated bytes of a live record.
pub fn record_bytes(record: &Record) -> usize {
    let tags: usize = record
        .tags
        .iter()
        .map(|t| t.len() + ITEM_OVERHEAD_BYTES)
        .sum();
    let meta: usize = record
        .meta
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2 * ITEM_OVERHEAD_BYTES)
        .sum();
    let names = record.service.as_str().len()
        + record.instance.as_str().len()
        + record.owner.as_str().len()
        + record.address.as_str().len();
    let subscriptions: usize = record
        .subscriptions
        .iter()
        .map(|s| {
            let group = s.group.as_ref().map_or(0, |g| g.as_str().len());
            s.pattern.as_str().len() + group + 2 * ITEM_OVERHEAD_BYTES
        })
        .sum();
    // The fingerprint's 32 bytes sit inline in the record: part of the fixed overhead.
    SLOT_OVERHEAD_BYTES + names + tags + meta + subscriptions
}

/// The estimated bytes of a tombstone.
pub fn tombstone_bytes(service: &ServiceName, instance: &str) -> usize {
    SLOT_OVERHEAD_BYTES + service.as_str().len() + instance.len()
}

/// What the store holds, as charged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live instances.
    pub instances: usize,
    /// Estimated bytes of every slot, tombstones included.
    pub bytes: usize,
}

/// Replicated entries this node could not take (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Replicated entries refused since start.
    pub total: u64,
    /// When the last one was refused.
    pub last: Option<Instant>,
}

/// One change of a slot, as the budget sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Charge {
    /// Bytes of the slot being replaced (0 if none).
    pub(super) old_bytes: usize,
    /// Bytes of the new slot (0 if the slot is removed).
    pub(super) new_bytes: usize,
    /// Whether the slot was live before.
    pub(super) was_live: bool,
    /// Whether the slot is live after.
    pub(super) is_live: bool,
}

/// The counters behind [`Registry::usage`] and [`Registry::refusals`].
#[derive(Debug)]
pub(super) struct Budget {
    max_instances: usize,
    max_bytes: usize,
    usage: Mutex<Usage>,
    refusals: Mutex<RefusalLog>,
}

#[derive(Debug, Default)]
struct RefusalLog {
    refusals: Refusals,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Budget {
    pub(super) fn new(max_instances: usize, max_bytes: usize) -> Self {
        Self {
            max_instances,
            max_bytes,
            usage: Mutex::new(Usage::default()),
            refusals: Mutex::new(RefusalLog::default()),
        }
    }

    pub(super) fn usage(&self) -> Usage {
        *self.usage.lock()
    }

    /// Charges a live write if it fits: a new instance needs a free instance slot, and a
    /// write that grows the estimate must stay within the byte budget. A write that does not
    /// grow anything (a renewal, a smaller replacement) always fits. Nothing is charged when
    /// it does not fit.
    pub(super) fn try_charge(&self, charge: Charge) -> Result<(), RegisterError> {
        let mut usage = self.usage.lock();
        let adds_instance = charge.is_live && !charge.was_live;
        if adds_instance && usage.instances >= self.max_instances {
            return Err(RegisterError::CapacityFull {
                max: self.max_instances,
            });
        }
        let bytes = usage.bytes - charge.old_bytes.min(usage.bytes) + charge.new_bytes;
        if charge.new_bytes > charge.old_bytes && bytes > self.max_bytes {
            return Err(RegisterError::BytesFull {
                max_bytes: self.max_bytes,
                used_bytes: usage.bytes,
                entry_bytes: charge.new_bytes,
            });
        }
        apply(&mut usage, charge, bytes);
        Ok(())
    }

    /// Charges a change that may not be refused (tombstones, removals, renewals).
    pub(super) fn force_charge(&self, charge: Charge) {
        let mut usage = self.usage.lock();
        let bytes = usage.bytes - charge.old_bytes.min(usage.bytes) + charge.new_bytes;
        apply(&mut usage, charge, bytes);
    }

    pub(super) fn refusals(&self) -> Refusals {
        self.refusals.lock().refusals
    }

    /// Counts a refused replicated entry; logs it unless one was logged less than
    /// [`REFUSAL_LOG_INTERVAL`] ago (those are counted into the next line).
    pub(super) fn refuse_replicated(
        &self,
        service: &ServiceName,
        err: &RegisterError,
        now: Instant,
    ) {
        metrics::counter!("directory_registry_replicated_refused_total").increment(1);
        let mut log = self.refusals.lock();
        log.refusals.total += 1;
        log.refusals.last = Some(now);
        let due = log
            .last_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL);
        if !due {
            log.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut log.unlogged);
        log.last_logged = Some(now);
        drop(log);
        tracing::warn!(
            %service, error = %err, refused_since_last_line = also,
            "a replicated entry was REFUSED: this node's registry is full and now differs \
             from the cluster; raise --max-instances / --max-registry-bytes (see docs/design.md)"
        );
    }
}

fn apply(usage: &mut Usage, charge: Charge, bytes: usize) {
    usage.bytes = bytes;
    match (charge.was_live, charge.is_live) {
        (false, true) => usage.instances += 1,
        (true, false) => usage.instances = usage.instances.saturating_sub(1),
        _ => {}
    }
    #[allow(clippy::cast_precision_loss)] // byte counts are far below 2^52
    metrics::gauge!("directory_registry_estimated_bytes").set(bytes as f64);
}

impl Registry {
    /// What the store holds, as charged against `max_instances` and `max_registry_bytes`.
    pub fn usage(&self) -> Usage {
        self.inner.budget.usage()
    }

    /// Replicated entries this node refused because it was full.
    pub fn refusals(&self) -> Refusals {
        self.inner.budget.refusals()
    }

    /// Charges replacing `instance`'s slot by one of `new_bytes` (0: removing it), live or
    /// not. With `refusable`, a write that does not fit is refused and nothing is charged.
    pub(super) fn charge_slot(
        &self,
        svc: &ServiceState,
        instance: &InstanceId,
        (new_bytes, is_live): (usize, bool),
        refusable: bool,
    ) -> Result<(), RegisterError> {
        let old = svc.slots.get(instance);
        let charge = Charge {
            old_bytes: old.map_or(0, |s| s.bytes),
            new_bytes,
            was_live: old.and_then(Slot::live_record).is_some(),
            is_live,
        };
        if refusable {
            self.inner.budget.try_charge(charge)
        } else {
            self.inner.budget.force_charge(charge);
            Ok(())
        }
    }

    /// Counts and (rate-limited) logs a replicated entry the store could not take.
    pub(super) fn refuse_replicated(
        &self,
        service: &ServiceName,
        err: &RegisterError,
        now: Instant,
    ) {
        self.inner.budget.refuse_replicated(service, err, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(old: usize, new: usize, was_live: bool) -> Charge {
        Charge {
            old_bytes: old,
            new_bytes: new,
            was_live,
            is_live: true,
        }
    }

    #[test]
    fn writes_that_grow_nothing_always_fit() {
        let b = Budget::new(1, 1_000);
        assert_eq!(b.try_charge(live(0, 900, false)), Ok(()));
        assert_eq!(b.try_charge(live(900, 900, true)), Ok(()), "renewal");
        assert_eq!(b.try_charge(live(900, 600, true)), Ok(()), "smaller");
        assert_eq!(
            b.usage(),
            Usage {
                instances: 1,
                bytes: 600
            }
        );
        assert!(matches!(
            b.try_charge(live(600, 1_200, true)),
            Err(RegisterError::BytesFull {
                max_bytes: 1_000,
                used_bytes: 600,
                entry_bytes: 1_200
            })
        ));
        assert!(matches!(
            b.try_charge(live(0, 10, false)),
            Err(RegisterError::CapacityFull { max: 1 })
        ));
        assert_eq!(b.usage().bytes, 600, "refusals charge nothing");
        b.force_charge(Charge {
            old_bytes: 600,
            new_bytes: 100,
            was_live: true,
            is_live: false,
        });
        assert_eq!(
            b.usage(),
            Usage {
                instances: 0,
                bytes: 100
            }
        );
    }

    #[test]
    fn refusals_are_counted_and_logged_at_most_once_per_interval() {
        let b = Budget::new(1, 1);
        let s = ServiceName::new("s").unwrap();
        let t0 = Instant::now();
        let err = RegisterError::CapacityFull { max: 1 };
        b.refuse_replicated(&s, &err, t0);
        b.refuse_replicated(&s, &err, t0 + Duration::from_secs(1));
        assert_eq!(b.refusals.lock().unlogged, 1);
        b.refuse_replicated(&s, &err, t0 + REFUSAL_LOG_INTERVAL);
        assert_eq!(b.refusals.lock().unlogged, 0);
        assert_eq!(b.refusals().total, 3);
        assert_eq!(b.refusals().last, Some(t0 + REFUSAL_LOG_INTERVAL));
    }
}
