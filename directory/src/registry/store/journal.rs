//! The persistence hook: every change of a slot (a live record stored, a tombstone written,
//! a tombstone forgotten), local or replicated, goes to the [`Journal`] in the order the
//! store made it; whoever holds the other end (`crate::persist`) writes it to disk in
//! batches and reports how far it got. [`Registry::flushed`] waits for that.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::Registry;
use crate::registry::version::Version;
use crate::registry::{InstanceId, Record, ServiceName, TombstoneReason};

/// One change of a slot, as it should be on disk.
#[derive(Debug, Clone)]
pub enum JournalOp {
    /// A live record, held until `expires_at` (wall clock; the grace of a non-owner
    /// included).
    Live {
        /// The record.
        record: Arc<Record>,
        /// Its version.
        version: Version,
        /// When its lease, as held here, ends.
        expires_at: SystemTime,
    },
    /// A tombstone written (or received) at `written_at`.
    Tombstone {
        /// Service part of the key.
        service: ServiceName,
        /// Instance part of the key.
        instance: InstanceId,
        /// Its version.
        version: Version,
        /// Why.
        reason: TombstoneReason,
        /// When it was written here (its age starts there).
        written_at: SystemTime,
    },
    /// The slot was dropped (a tombstone past its retention).
    Forget {
        /// Service part of the key.
        service: ServiceName,
        /// Instance part of the key.
        instance: InstanceId,
    },
}

impl JournalOp {
    /// The key the change is about.
    pub fn key(&self) -> (&ServiceName, &InstanceId) {
        match self {
            Self::Live { record, .. } => (&record.service, &record.instance),
            Self::Tombstone {
                service, instance, ..
            }
            | Self::Forget { service, instance } => (service, instance),
        }
    }
}

/// A numbered change, with the store's change index when it was made.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Position in the journal (1, 2, ...): changes are numbered in the order made.
    pub seq: u64,
    /// The store's last change index at the time (persisted so it never goes back).
    pub index: u64,
    /// The change.
    pub op: JournalOp,
}

/// How far the writer got: every change up to `seq` is durable; `error` is set while the
/// writer fails (and retries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    /// Changes up to this position are on disk.
    pub seq: u64,
    /// The writer's last error, while it has not yet succeeded again.
    pub error: Option<String>,
}

/// Changes are not on disk: the writer is failing or stopped. The changes are applied in
/// memory and replicated; they are lost if the node stops before the writer recovers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotDurable {
    /// The writer failed; it keeps retrying. Remedy: see the error (disk full, I/O).
    #[error("the data directory cannot be written: {0}")]
    Failing(String),
    /// The writer stopped (the node is shutting down).
    #[error("the data directory writer has stopped")]
    Stopped,
}

/// The sending end of the persistence hook, given to [`Registry::with_hooks`].
#[derive(Debug)]
pub struct Journal {
    sender: Mutex<Sender>,
    durable: watch::Receiver<Durable>,
}

#[derive(Debug)]
struct Sender {
    last_seq: u64,
    tx: Option<mpsc::UnboundedSender<JournalEntry>>,
}

impl Journal {
    /// A journal sending to `tx`, whose writer reports on `durable`.
    pub fn new(tx: mpsc::UnboundedSender<JournalEntry>, durable: watch::Receiver<Durable>) -> Self {
        Self {
            sender: Mutex::new(Sender {
                last_seq: 0,
                tx: Some(tx),
            }),
            durable,
        }
    }

    /// Numbers and sends a change (under one lock, so numbers follow the send order).
    fn record(&self, index: u64, op: JournalOp) {
        let mut sender = self.sender.lock();
        let Some(tx) = &sender.tx else { return };
        let seq = sender.last_seq + 1;
        if tx.send(JournalEntry { seq, index, op }).is_ok() {
            sender.last_seq = seq;
        }
    }

    fn last_seq(&self) -> u64 {
        self.sender.lock().last_seq
    }

    /// Stops sending: the writer sees the channel close once it has taken what was sent.
    fn close(&self) {
        self.sender.lock().tx = None;
    }
}

impl Registry {
    /// Sends a change to the journal, if there is one.
    pub(super) fn journal(&self, op: impl FnOnce() -> JournalOp) {
        if let Some(journal) = &self.inner.journal {
            journal.record(self.index(), op());
        }
    }

    /// Resolves once every change made so far is on disk (at once without a journal).
    /// Errors when the writer fails or has stopped before getting there.
    pub async fn flushed(&self) -> Result<(), NotDurable> {
        let Some(journal) = &self.inner.journal else {
            return Ok(());
        };
        let target = journal.last_seq();
        let mut durable = journal.durable.clone();
        let reached = durable
            .wait_for(|d| d.seq >= target || d.error.is_some())
            .await
            .map_err(|_| NotDurable::Stopped)?;
        match &reached.error {
            Some(error) if reached.seq < target => Err(NotDurable::Failing(error.clone())),
            _ => Ok(()),
        }
    }

    /// Closes the journal: later changes are not persisted (for shutdown).
    pub fn close_journal(&self) {
        if let Some(journal) = &self.inner.journal {
            journal.close();
        }
    }
}
