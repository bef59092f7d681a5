//! The group committer: one thread that executes the core's [`StoreOp`]s in order. Every
//! write pending when it wakes goes into one transaction with one fsync (group commit);
//! then it answers the reads of that batch and reports how many writes are durable.

use super::records::{
    CompletedRecord, DeadRecord, MessageRecord, TargetRecord, decode, encode, unix_ms,
};
use super::{
    COMPLETED, COMPLETED_BY_TIME, DEAD, FLOORS, KEY_NEXT_ID, META, OUTBOX, Store, StoreError,
    add_used_bytes, meta_u64, record_cost,
};
use crate::proto::hash::FastMap;
use crate::proto::{LoadedMessage, SendRequest, StoreOp};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Most operations taken into one batch.
const MAX_BATCH: usize = 8192;
/// How often expired receiver records are deleted.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// Expired receiver records deleted per transaction.
const EXPIRY_CHUNK: usize = 4096;

/// What the committer tells the driver.
#[derive(Debug)]
pub(crate) enum StoreReport {
    /// Every write up to this number is durable.
    Persisted(u64),
    /// The answer to a `Load`.
    Loaded {
        service: String,
        messages: Vec<LoadedMessage>,
        exhausted: bool,
    },
    /// The answer to a `Lookup`.
    LookedUp {
        session: u64,
        id: u64,
        found: Option<Option<Bytes>>,
    },
    /// The store failed; nothing after the last `Persisted` is durable.
    Failed(StoreError),
}

/// Maps the core's monotonic instants to wall-clock time and back (deadlines are stored
/// as wall-clock milliseconds so that they survive restarts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    instant: Instant,
    system: SystemTime,
}

impl WallClock {
    pub(crate) fn now(instant: Instant) -> Self {
        Self {
            instant,
            system: SystemTime::now(),
        }
    }

    fn wall_ms(&self, at: Instant) -> u64 {
        let wall = match at.checked_duration_since(self.instant) {
            Some(ahead) => self.system + ahead,
            None => self.system - self.instant.duration_since(at),
        };
        unix_ms(wall)
    }

    fn instant(&self, wall_ms: u64) -> Instant {
        let anchor = unix_ms(self.system);
        if wall_ms >= anchor {
            self.instant + Duration::from_millis(wall_ms - anchor)
        } else {
            let behind = Duration::from_millis(anchor - wall_ms);
            self.instant.checked_sub(behind).unwrap_or(self.instant)
        }
    }
}

/// Handle on the committer thread.
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<StoreOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Starts the thread; `report` is called from it with every [`StoreReport`].
    pub(crate) fn start(
        store: &Store,
        clock: WallClock,
        retention: Duration,
        report: impl Fn(StoreReport) + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            db: store.database().clone(),
            clock,
            retention,
            committed: 0,
            last_expiry: None,
        };
        let thread = std::thread::Builder::new()
            .name("peer-store".into())
            .spawn(move || worker.run(&rx, &report))
            .map_err(|e| StoreError::Database(format!("cannot start the committer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues an operation (executed in submission order).
    pub(crate) fn submit(&self, op: StoreOp) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(op);
        }
    }

    /// Lets the thread finish what was submitted, then waits for it.
    pub(crate) fn stop(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    db: Arc<Database>,
    clock: WallClock,
    retention: Duration,
    committed: u64,
    last_expiry: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<StoreOp>, report: &dyn Fn(StoreReport)) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.batch(&batch, report) {
                tracing::error!("peer store failed: {e}");
                report(StoreReport::Failed(e));
                return;
            }
        }
    }

    fn batch(&mut self, batch: &[StoreOp], report: &dyn Fn(StoreReport)) -> Result<(), StoreError> {
        let writes = batch.iter().filter(|op| op.is_write()).count() as u64;
        if writes > 0 {
            self.write(batch)?;
            self.committed += writes;
            report(StoreReport::Persisted(self.committed));
        }
        for op in batch {
            match op {
                StoreOp::Load {
                    service,
                    after,
                    max,
                } => report(self.load(service, *after, *max)?),
                StoreOp::Lookup { session, id } => report(StoreReport::LookedUp {
                    session: *session,
                    id: *id,
                    found: self.lookup(*session, *id)?,
                }),
                _ => {}
            }
        }
        self.expire()
    }

    fn write(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        let now_ms = unix_ms(SystemTime::now());
        let txn = self.db.begin_write()?;
        {
            let mut w = Writes {
                outbox: txn.open_table(OUTBOX)?,
                dead: txn.open_table(DEAD)?,
                completed: txn.open_table(COMPLETED)?,
                by_time: txn.open_table(COMPLETED_BY_TIME)?,
                floors: txn.open_table(FLOORS)?,
                new_floors: FastMap::default(),
                used: 0,
                next_id: 0,
                now_ms,
                clock: self.clock,
            };
            for op in batch {
                w.apply(op)?;
            }
            w.write_floors()?;
            let mut meta = txn.open_table(META)?;
            add_used_bytes(&mut meta, w.used)?;
            let next_id = meta_u64(&meta, KEY_NEXT_ID)?.unwrap_or(1).max(w.next_id);
            meta.insert(KEY_NEXT_ID, next_id.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn load(&self, service: &str, after: u64, max: usize) -> Result<StoreReport, StoreError> {
        let txn = self.db.begin_read()?;
        let outbox = txn.open_table(OUTBOX)?;
        let mut messages = Vec::new();
        let from = (service, after.saturating_add(1));
        let to = (service, u64::MAX);
        for item in outbox.range(from..=to)?.take(max) {
            let (k, v) = item?;
            let (_, id) = k.value();
            let rec = decode::<MessageRecord>(v.value(), "message")?;
            let attempts = rec.attempts;
            let req = self.request_of(service, rec);
            messages.push(LoadedMessage { id, req, attempts });
        }
        Ok(StoreReport::Loaded {
            service: service.to_owned(),
            exhausted: messages.len() < max,
            messages,
        })
    }

    fn request_of(&self, service: &str, rec: MessageRecord) -> SendRequest {
        SendRequest {
            service: service.to_owned(),
            target: rec.target.as_ref().map(|t| t.to_instance(service)),
            key: rec.key.map(Bytes::from),
            payload: Bytes::from(rec.payload),
            request: rec.request,
            deadline: self.clock.instant(rec.deadline_ms),
            no_responders: rec.no_responders,
            ack_timeout: rec.ack_timeout_ms.map(Duration::from_millis),
            max_attempts: rec.max_attempts.and_then(std::num::NonZeroU32::new),
        }
    }

    fn lookup(&self, session: u64, id: u64) -> Result<Option<Option<Bytes>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COMPLETED)?;
        let Some(v) = table.get((session, id))? else {
            return Ok(None);
        };
        let rec = decode::<CompletedRecord>(v.value(), "completed record")?;
        Ok(Some(rec.reply.map(Bytes::from)))
    }

    /// Deletes receiver records older than the retention, at most every [`EXPIRY_INTERVAL`].
    fn expire(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        if self
            .last_expiry
            .is_some_and(|t| now.duration_since(t) < EXPIRY_INTERVAL)
        {
            return Ok(());
        }
        self.last_expiry = Some(now);
        let cutoff = unix_ms(SystemTime::now())
            .saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        expire_completed(&self.db, cutoff)
    }
}

/// Deletes the receiver records handled before `cutoff_ms`.
pub(super) fn expire_completed(db: &Database, cutoff_ms: u64) -> Result<(), StoreError> {
    loop {
        let txn = db.begin_write()?;
        let n = {
            let mut by_time = txn.open_table(COMPLETED_BY_TIME)?;
            let mut completed = txn.open_table(COMPLETED)?;
            let mut keys = Vec::new();
            for item in by_time.range(..(cutoff_ms, 0u64, 0u64))?.take(EXPIRY_CHUNK) {
                keys.push(item?.0.value());
            }
            for key @ (_, session, id) in &keys {
                by_time.remove(key)?;
                completed.remove((*session, *id))?;
            }
            keys.len()
        };
        txn.commit()?;
        if n < EXPIRY_CHUNK {
            return Ok(());
        }
    }
}

/// The tables one write batch touches, and what it changes in the metadata.
struct Writes<'t> {
    outbox: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    dead: redb::Table<'t, u64, &'static [u8]>,
    completed: redb::Table<'t, (u64, u64), &'static [u8]>,
    by_time: redb::Table<'t, (u64, u64, u64), ()>,
    floors: redb::Table<'t, u64, u64>,
    /// Highest completed id per sender session in this batch: the floors are written once
    /// per batch, not once per message.
    new_floors: FastMap<u64, u64>,
    used: i128,
    next_id: u64,
    now_ms: u64,
    clock: WallClock,
}

impl Writes<'_> {
    fn apply(&mut self, op: &StoreOp) -> Result<(), StoreError> {
        match op {
            StoreOp::Put { id, req } => self.put(*id, req),
            StoreOp::Attempted {
                service,
                id,
                attempts,
            } => self.attempted(service, *id, *attempts),
            StoreOp::Resolve { service, id, dead } => self.resolve(service, *id, dead.as_deref()),
            StoreOp::Complete { session, id, reply } => self.complete(*session, *id, reply),
            StoreOp::Load { .. } | StoreOp::Lookup { .. } => Ok(()),
        }
    }

    fn put(&mut self, id: u64, req: &SendRequest) -> Result<(), StoreError> {
        let rec = MessageRecord {
            target: req.target.as_deref().map(TargetRecord::of),
            key: req.key.as_ref().map(|k| k.to_vec()),
            payload: req.payload.to_vec(),
            request: req.request,
            no_responders: req.no_responders,
            deadline_ms: self.clock.wall_ms(req.deadline),
            accepted_ms: self.now_ms,
            ack_timeout_ms: req
                .ack_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_attempts: req.max_attempts.map(std::num::NonZeroU32::get),
            attempts: 0,
        };
        self.outbox
            .insert((req.service.as_str(), id), encode(&rec).as_slice())?;
        self.used += i128::from(record_cost(&req.service, &rec));
        self.next_id = self.next_id.max(id.saturating_add(1));
        Ok(())
    }

    /// Records the attempts of a message of the outbox (a message no longer there is
    /// ignored: the count only matters while it waits).
    fn attempted(&mut self, service: &str, id: u64, attempts: u32) -> Result<(), StoreError> {
        let rec = match self.outbox.get((service, id))? {
            Some(v) => decode::<MessageRecord>(v.value(), "message")?,
            None => return Ok(()),
        };
        if rec.attempts < attempts {
            let rec = MessageRecord { attempts, ..rec };
            self.outbox.insert((service, id), encode(&rec).as_slice())?;
        }
        Ok(())
    }

    fn resolve(
        &mut self,
        service: &str,
        id: u64,
        dead: Option<&crate::proto::DeadLetter>,
    ) -> Result<(), StoreError> {
        let old = match self.outbox.remove((service, id))? {
            Some(v) => Some(decode::<MessageRecord>(v.value(), "message")?),
            None => None,
        };
        if let Some(old) = &old {
            self.used -= i128::from(record_cost(service, old));
        }
        if let Some(letter) = dead {
            let message = old.unwrap_or_else(|| MessageRecord {
                target: None,
                key: letter.key.as_ref().map(|k| k.to_vec()),
                payload: letter.payload.to_vec(),
                request: false,
                no_responders: false,
                deadline_ms: self.now_ms,
                accepted_ms: self.now_ms,
                ack_timeout_ms: None,
                max_attempts: None,
                attempts: letter.attempts,
            });
            let rec = DeadRecord::of(letter, message, self.now_ms);
            self.dead.insert(id, encode(&rec).as_slice())?;
        }
        Ok(())
    }

    fn complete(&mut self, session: u64, id: u64, reply: &Option<Bytes>) -> Result<(), StoreError> {
        let rec = CompletedRecord {
            at_ms: self.now_ms,
            reply: reply.as_ref().map(|r| r.to_vec()),
        };
        self.completed
            .insert((session, id), encode(&rec).as_slice())?;
        self.by_time.insert((self.now_ms, session, id), ())?;
        let floor = self.new_floors.entry(session).or_default();
        *floor = (*floor).max(id);
        Ok(())
    }

    /// Raises each session's stored floor to the highest id completed in this batch.
    fn write_floors(&mut self) -> Result<(), StoreError> {
        for (session, id) in std::mem::take(&mut self.new_floors) {
            let floor = self.floors.get(session)?.map_or(0, |v| v.value());
            if id > floor {
                self.floors.insert(session, id)?;
            }
        }
        Ok(())
    }
}
