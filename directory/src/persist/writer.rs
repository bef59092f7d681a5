//! The group committer: one thread that takes the registry's journal, keeps the latest
//! change per key, and writes every batch of pending changes in one transaction (one
//! fsync). While writing fails it keeps the pending changes (one per key, so memory stays
//! bounded by the registry's own), reports the error and retries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redb::Database;
use tokio::sync::{mpsc, watch};

use super::record::StoredEntry;
use super::{ENTRIES, KEY_CLOCK, KEY_INDEX, META, PersistError};
use crate::registry::{Durable, InstanceId, Journal, JournalEntry, JournalOp, ServiceName};

/// Changes taken into one batch at most (more wait for the next one).
const MAX_BATCH: usize = 8192;
/// Pause before retrying a failed batch.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Failed attempts to write what is pending once the journal is closed, before giving up.
const ATTEMPTS_AT_STOP: u32 = 3;

/// The writer thread; [`Writer::stop`] waits for it to write what was journaled.
#[derive(Debug)]
pub struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(db: Arc<Database>) -> Result<(Journal, Self), PersistError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (durable_tx, durable_rx) = watch::channel(Durable::default());
        let batcher = Batcher {
            db,
            pending: BTreeMap::new(),
            last_seq: 0,
            index: 0,
            clock: 0,
        };
        let thread = std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || batcher.run(rx, &durable_tx))
            .map_err(|e| PersistError::Database(format!("cannot start the writer: {e}")))?;
        Ok((
            Journal::new(tx, durable_rx),
            Self {
                thread: Some(thread),
            },
        ))
    }

    /// Waits until the thread has written what was journaled before the journal was closed
    /// ([`crate::registry::Registry::close_journal`]). Blocking: call it off the runtime.
    pub fn stop(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Batcher {
    db: Arc<Database>,
    pending: BTreeMap<(ServiceName, InstanceId), JournalOp>,
    last_seq: u64,
    index: u64,
    clock: u64,
}

impl Batcher {
    fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<JournalEntry>,
        durable: &watch::Sender<Durable>,
    ) {
        let mut failures_after_close = 0;
        let mut open = true;
        loop {
            if self.pending.is_empty() {
                match rx.blocking_recv() {
                    Some(entry) => self.absorb(entry),
                    None => return,
                }
            }
            open &= self.take_ready(&mut rx);
            match self.write() {
                Ok(()) => durable.send_replace(Durable {
                    seq: self.last_seq,
                    error: None,
                }),
                Err(e) => {
                    report_failure(&e, durable);
                    failures_after_close += u32::from(!open);
                    if failures_after_close >= ATTEMPTS_AT_STOP {
                        tracing::error!(
                            pending = self.pending.len(),
                            "registry changes NOT persisted at shutdown"
                        );
                        return;
                    }
                    std::thread::sleep(RETRY_AFTER);
                    continue;
                }
            };
            if !open && self.pending.is_empty() {
                return;
            }
        }
    }

    /// Takes what is already queued (up to a batch); false once the journal is closed.
    fn take_ready(&mut self, rx: &mut mpsc::UnboundedReceiver<JournalEntry>) -> bool {
        for _ in 0..MAX_BATCH {
            match rx.try_recv() {
                Ok(entry) => self.absorb(entry),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn absorb(&mut self, entry: JournalEntry) {
        self.last_seq = entry.seq;
        self.index = self.index.max(entry.index);
        if let JournalOp::Live { version, .. } | JournalOp::Tombstone { version, .. } = &entry.op {
            self.clock = self.clock.max(version.hlc);
        }
        let (service, instance) = entry.op.key();
        self.pending
            .insert((service.clone(), instance.clone()), entry.op);
    }

    /// Writes every pending change in one transaction; they stay pending if it fails.
    fn write(&mut self) -> Result<(), PersistError> {
        let txn = self.db.begin_write()?;
        {
            let mut entries = txn.open_table(ENTRIES)?;
            for ((service, instance), op) in &self.pending {
                let key = (service.as_str(), instance.as_str());
                match StoredEntry::of(op) {
                    Some(stored) => entries.insert(key, stored.encode().as_slice())?,
                    None => entries.remove(key)?,
                };
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(KEY_INDEX, self.index.to_be_bytes().as_slice())?;
            meta.insert(KEY_CLOCK, self.clock.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        metrics::counter!("directory_persist_batches_total").increment(1);
        self.pending.clear();
        Ok(())
    }
}

fn report_failure(e: &PersistError, durable: &watch::Sender<Durable>) {
    metrics::counter!("directory_persist_errors_total").increment(1);
    tracing::error!(error = %e, "cannot write the data directory; retrying");
    durable.send_modify(|d| d.error = Some(e.to_string()));
}
