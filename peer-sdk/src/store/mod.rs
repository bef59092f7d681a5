//! The peer's durable store: a crash-safe embedded database (redb) in a directory, holding
//! the outbox (accepted, unresolved messages), the dead letters, the receiver's record of
//! completed deliveries, and the peer's identity (key pair, instance name, session).
//!
//! A running peer opens its store with [`crate::PeerBuilder::store`]; the file is locked
//! while it runs. [`Store::open`] opens the store of a stopped peer to list, replay or purge
//! what it holds (the `peer outbox` / `peer dead-letters` commands). Listings iterate
//! over the file; nothing is loaded wholly into memory.
//!
//! Tables (format version [`FORMAT_VERSION`]):
//! - `meta`: format version, identity, instance name, session, next message id, usage;
//! - `outbox`: `(service, id)` → message, in id order per service;
//! - `dead_letters`: `id` → dead letter;
//! - `completed` and `completed_by_time`: receiver records `(session, id)` → reply, and
//!   their expiry index; `floors`: the highest completed id per sender session.

mod committer;
mod migrate;
mod records;

pub(crate) use committer::{Committer, StoreReport, WallClock};
pub use records::FORMAT_VERSION;
pub(crate) use records::IdentityRecord;
use records::{
    DeadRecord, MessageRecord, OLDEST_MIGRATED_FORMAT, decode, encode, from_unix_ms, unix_ms,
};

use crate::proto::{DeadLetterReason, message_cost};
use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Name of the database file inside the store directory.
pub const FILE_NAME: &str = "peer-store.redb";

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const OUTBOX: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("outbox");
const DEAD: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("dead_letters");
const COMPLETED: TableDefinition<'_, (u64, u64), &[u8]> = TableDefinition::new("completed");
const COMPLETED_BY_TIME: TableDefinition<'_, (u64, u64, u64), ()> =
    TableDefinition::new("completed_by_time");
const FLOORS: TableDefinition<'_, u64, u64> = TableDefinition::new("floors");

const KEY_FORMAT: &str = "format";
const KEY_SESSION: &str = "session";
const KEY_NEXT_ID: &str = "next_id";
const KEY_INSTANCE: &str = "instance";
const KEY_IDENTITY: &str = "identity";
const KEY_USED_BYTES: &str = "used_bytes";

/// Messages replayed or purged per write transaction, so that a huge table does not make
/// one huge transaction.
const BULK_CHUNK: usize = 4096;

/// Opening or using a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store directory or file cannot be created or read. Nothing changed.
    /// Remedy: check the path and its permissions.
    #[error("store I/O error at {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process (or another peer in this process) has the store open. Nothing
    /// changed. Remedy: stop that peer first; a store serves one peer at a time.
    #[error("the store at {0} is in use by another peer")]
    Locked(PathBuf),
    /// The file is not a peer store (another program's file or another redb database).
    /// Nothing changed. Remedy: point at the right directory.
    #[error("{path} is not a peer store: {detail}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },
    /// The store was written by a build with another on-disk format. Nothing changed.
    /// Remedy: use the build that wrote it, or drain it there first.
    #[error("store format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// Version in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The file is damaged (a record or the database structure cannot be read). Nothing
    /// was changed by the failed operation. Remedy: restore from a backup or move it aside.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// The database reported an error (disk full, I/O failure while committing). The
    /// operation had no effect.
    #[error("store database error: {0}")]
    Database(String),
}

impl StoreError {
    fn database(e: impl std::fmt::Display) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(d) => Self::Corrupt(d),
            other => Self::database(other),
        }
    }
}

macro_rules! database_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                match redb::Error::from(e) {
                    redb::Error::Corrupted(d) => Self::Corrupt(d),
                    other => Self::database(other),
                }
            }
        }
    )*};
}
database_errors!(redb::TransactionError, redb::TableError, redb::CommitError);

/// How much the outbox holds, as counted against the quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Accepted, unresolved messages.
    pub messages: u64,
    /// Their cost in bytes (payload, key, service name and a fixed per-message overhead,
    /// see [`crate::proto::message_cost`]).
    pub bytes: u64,
    /// Dead letters held.
    pub dead_letters: u64,
}

/// An accepted, unresolved message as the store holds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredMessage {
    /// Message id (stable across restarts and replays).
    pub id: u64,
    /// Destination service.
    pub service: String,
    /// The instance of a broadcast copy; `None` lets the balancer choose.
    pub target: Option<String>,
    /// Ordering key.
    pub key: Option<Bytes>,
    /// Payload.
    pub payload: Bytes,
    /// A reply is expected.
    pub request: bool,
    /// When it is given up (dead-lettered).
    pub deadline: SystemTime,
    /// When it was accepted.
    pub accepted: SystemTime,
    /// Its own ack timeout; `None` uses the peer's configured one.
    pub ack_timeout: Option<Duration>,
    /// Its own maximum attempts; `None` uses the peer's configured one.
    pub max_attempts: Option<NonZeroU32>,
    /// Attempts made, as recorded when an attempt failed and was retried (a first attempt
    /// cut short by a crash is not counted).
    pub attempts: u32,
}

impl StoredMessage {
    fn of(service: &str, id: u64, r: MessageRecord) -> Self {
        Self {
            ack_timeout: r.ack_timeout_ms.map(Duration::from_millis),
            max_attempts: r.max_attempts.and_then(NonZeroU32::new),
            attempts: r.attempts,
            id,
            service: service.to_owned(),
            target: r.target.map(|t| t.instance),
            key: r.key.map(Bytes::from),
            payload: Bytes::from(r.payload),
            request: r.request,
            deadline: from_unix_ms(r.deadline_ms),
            accepted: from_unix_ms(r.accepted_ms),
        }
    }
}

/// A dead letter as the store holds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredDeadLetter {
    /// The message as it was accepted.
    pub message: StoredMessage,
    /// Why it was given up.
    pub reason: DeadLetterReason,
    /// Attempts made.
    pub attempts: u32,
    /// Instance of the last attempt.
    pub last_instance: Option<String>,
    /// When it was dead-lettered.
    pub dead_lettered: SystemTime,
}

impl StoredDeadLetter {
    fn of(id: u64, r: DeadRecord) -> Self {
        Self {
            message: StoredMessage::of(&r.service, id, r.message),
            reason: r.reason.into(),
            attempts: r.attempts,
            last_instance: r.last_instance,
            dead_lettered: from_unix_ms(r.at_ms),
        }
    }
}

/// An open store. See the [module docs](self).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in directory `dir`. A store of an older format
    /// this build knows (format 1) is migrated to [`FORMAT_VERSION`] in one transaction. A
    /// file that is not a peer store, a store of another format version, or a damaged file
    /// is a typed error, and nothing is changed; a store open elsewhere is
    /// [`StoreError::Locked`]. Its page cache is at most
    /// [`crate::config::DEFAULT_STORE_CACHE_BYTES`] (see [`Store::open_with_cache`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, crate::config::DEFAULT_STORE_CACHE_BYTES)
    }

    /// Like [`Store::open`], with a page cache of at most `cache_bytes`
    /// ([`crate::StoreConfig::cache_bytes`]).
    pub fn open_with_cache(dir: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_database(&path, cache_bytes)?;
        let store = Self {
            db: Arc::new(db),
            path,
        };
        store.check_format()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Checks the format version of an existing store, or initialises a new one.
    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
        let found = if tables.iter().any(|t| t == META.name()) {
            let meta = txn.open_table(META)?;
            meta.get(KEY_FORMAT)?.map(|v| v.value().to_vec())
        } else {
            None
        };
        match found {
            Some(v) => {
                let bytes: [u8; 4] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.foreign("bad format record"))?;
                let found = u32::from_be_bytes(bytes);
                if found == FORMAT_VERSION {
                    txn.abort()?;
                } else if (OLDEST_MIGRATED_FORMAT..FORMAT_VERSION).contains(&found) {
                    migrate::from_v1(&txn)?;
                    set_format(&txn)?;
                    txn.commit()?;
                } else {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None if !tables.is_empty() => {
                return Err(self.foreign("a redb database without the peer store's metadata"));
            }
            None => {
                init_tables(&txn)?;
                txn.commit()?;
            }
        }
        Ok(())
    }

    fn foreign(&self, detail: &str) -> StoreError {
        StoreError::Foreign {
            path: self.path.clone(),
            detail: detail.to_owned(),
        }
    }

    /// What the outbox and the dead letters hold.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(Usage {
            messages: txn.open_table(OUTBOX)?.len()?,
            bytes: meta_u64(&meta, KEY_USED_BYTES)?.unwrap_or(0),
            dead_letters: txn.open_table(DEAD)?.len()?,
        })
    }

    /// Iterates over the outbox: every accepted, unresolved message, by service then id
    /// (per service, the order they are sent in).
    pub fn outbox(&self) -> Result<OutboxIter, StoreError> {
        let txn = self.db.begin_read()?;
        let range = txn.open_table(OUTBOX)?.range::<(&str, u64)>(..)?;
        Ok(OutboxIter { range })
    }

    /// Iterates over the dead letters, by id.
    pub fn dead_letters(&self) -> Result<DeadLetterIter, StoreError> {
        let txn = self.db.begin_read()?;
        let range = txn.open_table(DEAD)?.range::<u64>(..)?;
        Ok(DeadLetterIter { range })
    }

    /// Moves dead letter `id` back to the outbox, with its original id, payload and key and
    /// a new deadline `deadline` from now: the next start of the peer sends it again as new
    /// attempts. Returns whether such a dead letter existed.
    pub fn replay_dead_letter(&self, id: u64, deadline: Duration) -> Result<bool, StoreError> {
        self.replay(Some(id), deadline).map(|n| n > 0)
    }

    /// [`Store::replay_dead_letter`] for every dead letter; returns how many moved.
    pub fn replay_dead_letters(&self, deadline: Duration) -> Result<u64, StoreError> {
        self.replay(None, deadline)
    }

    fn replay(&self, only: Option<u64>, deadline: Duration) -> Result<u64, StoreError> {
        let deadline_ms = unix_ms(SystemTime::now() + deadline);
        let mut moved = 0;
        let mut from = only.unwrap_or(0);
        loop {
            let txn = self.db.begin_write()?;
            let n = {
                let mut dead = txn.open_table(DEAD)?;
                let mut outbox = txn.open_table(OUTBOX)?;
                let mut meta = txn.open_table(META)?;
                let upto = only.unwrap_or(u64::MAX);
                let mut batch = Vec::new();
                for item in dead.range(from..=upto)?.take(BULK_CHUNK) {
                    let (k, v) = item?;
                    batch.push((k.value(), decode::<DeadRecord>(v.value(), "dead letter")?));
                }
                let mut bytes = 0u64;
                for (id, rec) in &batch {
                    let mut msg = rec.message.clone();
                    msg.deadline_ms = deadline_ms;
                    outbox.insert((rec.service.as_str(), *id), encode(&msg).as_slice())?;
                    dead.remove(*id)?;
                    bytes += record_cost(&rec.service, &msg);
                }
                add_used_bytes(&mut meta, bytes as i128)?;
                from = batch
                    .last()
                    .map_or(u64::MAX, |(id, _)| id.saturating_add(1));
                batch.len()
            };
            txn.commit()?;
            moved += n as u64;
            if n < BULK_CHUNK || only.is_some() {
                return Ok(moved);
            }
        }
    }

    /// Deletes every message of the outbox (they will never be sent); returns how many.
    pub fn purge_outbox(&self) -> Result<u64, StoreError> {
        let mut purged = 0;
        loop {
            let txn = self.db.begin_write()?;
            let n = {
                let mut outbox = txn.open_table(OUTBOX)?;
                let mut meta = txn.open_table(META)?;
                let mut bytes = 0u64;
                let mut n = 0usize;
                while n < BULK_CHUNK {
                    let Some((k, v)) = outbox.pop_first()? else {
                        break;
                    };
                    let (service, _) = k.value();
                    bytes += record_cost(service, &decode::<MessageRecord>(v.value(), "message")?);
                    n += 1;
                }
                add_used_bytes(&mut meta, -(bytes as i128))?;
                n
            };
            txn.commit()?;
            purged += n as u64;
            if n < BULK_CHUNK {
                return Ok(purged);
            }
        }
    }

    /// Deletes dead letter `id`; returns whether it existed.
    pub fn purge_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(DEAD)?.remove(id)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// Deletes every dead letter; returns how many.
    pub fn purge_dead_letters(&self) -> Result<u64, StoreError> {
        let mut purged = 0;
        loop {
            let txn = self.db.begin_write()?;
            let n = {
                let mut dead = txn.open_table(DEAD)?;
                let mut n = 0usize;
                while n < BULK_CHUNK && dead.pop_first()?.is_some() {
                    n += 1;
                }
                n
            };
            txn.commit()?;
            purged += n as u64;
            if n < BULK_CHUNK {
                return Ok(purged);
            }
        }
    }

    /// The instance name persisted by the peer that uses this store, if any.
    pub fn instance(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let v = meta.get(KEY_INSTANCE)?;
        match v {
            None => Ok(None),
            Some(v) => String::from_utf8(v.value().to_vec())
                .map(Some)
                .map_err(|_| StoreError::Corrupt("instance name is not UTF-8".into())),
        }
    }
}

/// What a starting peer takes from its store (and writes back when new).
#[derive(Debug, Clone)]
pub(crate) struct PeerState {
    pub(crate) identity: Option<IdentityRecord>,
    pub(crate) instance: Option<String>,
    pub(crate) session: u64,
    pub(crate) next_id: u64,
    pub(crate) used_bytes: u64,
    /// Services with messages in the outbox.
    pub(crate) services: Vec<String>,
    /// Highest completed id per sender session (receiver records).
    pub(crate) floors: Vec<(u64, u64)>,
}

impl Store {
    /// Reads the starting state of a peer; persists the identity, instance name and a new
    /// session when the store has none yet (`identity`, `instance` override stored ones).
    pub(crate) fn start_peer(
        &self,
        identity: Option<IdentityRecord>,
        instance: Option<String>,
    ) -> Result<PeerState, StoreError> {
        let txn = self.db.begin_write()?;
        let state = {
            let mut meta = txn.open_table(META)?;
            PeerState {
                identity: stored_identity(&mut meta, identity)?,
                instance: stored_instance(&mut meta, instance)?,
                session: stored_session(&mut meta)?,
                next_id: meta_u64(&meta, KEY_NEXT_ID)?.unwrap_or(1).max(1),
                used_bytes: meta_u64(&meta, KEY_USED_BYTES)?.unwrap_or(0),
                services: outbox_services(&txn.open_table(OUTBOX)?)?,
                floors: txn
                    .open_table(FLOORS)?
                    .iter()?
                    .map(|r| r.map(|(k, v)| (k.value(), v.value())))
                    .collect::<Result<_, _>>()?,
            }
        };
        txn.commit()?;
        Ok(state)
    }

    /// Persists the identity chosen at start (when the store had none).
    pub(crate) fn save_identity(
        &self,
        identity: &IdentityRecord,
        instance: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(KEY_IDENTITY, encode(identity).as_slice())?;
            meta.insert(KEY_INSTANCE, instance.as_bytes())?;
        }
        txn.commit()?;
        Ok(())
    }
}

type Meta<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// `given` (then stored), or the stored identity.
fn stored_identity(
    meta: &mut Meta<'_>,
    given: Option<IdentityRecord>,
) -> Result<Option<IdentityRecord>, StoreError> {
    if let Some(id) = given {
        meta.insert(KEY_IDENTITY, encode(&id).as_slice())?;
        return Ok(Some(id));
    }
    match meta.get(KEY_IDENTITY)? {
        Some(v) => Ok(Some(decode::<IdentityRecord>(v.value(), "identity")?)),
        None => Ok(None),
    }
}

/// `given` (then stored), or the stored instance name.
fn stored_instance(
    meta: &mut Meta<'_>,
    given: Option<String>,
) -> Result<Option<String>, StoreError> {
    if let Some(name) = given {
        meta.insert(KEY_INSTANCE, name.as_bytes())?;
        return Ok(Some(name));
    }
    match meta.get(KEY_INSTANCE)? {
        Some(v) => String::from_utf8(v.value().to_vec())
            .map(Some)
            .map_err(|_| StoreError::Corrupt("instance name is not UTF-8".into())),
        None => Ok(None),
    }
}

/// The stored session, or a new random one (stored).
fn stored_session(meta: &mut Meta<'_>) -> Result<u64, StoreError> {
    if let Some(s) = meta_u64(meta, KEY_SESSION)? {
        return Ok(s);
    }
    let s = rand::random::<u64>();
    meta.insert(KEY_SESSION, s.to_be_bytes().as_slice())?;
    Ok(s)
}

/// Distinct services of the outbox, found by seeking past each one (no full scan).
fn outbox_services(
    outbox: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
) -> Result<Vec<String>, StoreError> {
    let mut services = Vec::new();
    loop {
        let next = match services.last() {
            None => outbox.first()?.map(|(k, _)| k.value().0.to_owned()),
            Some(last) => {
                let last: &String = last;
                let from = (last.as_str(), u64::MAX);
                let mut range = outbox.range::<(&str, u64)>(from..)?;
                let mut found = None;
                for item in range.by_ref() {
                    let (k, _) = item?;
                    let (s, _) = k.value();
                    if s != last.as_str() {
                        found = Some(s.to_owned());
                        break;
                    }
                }
                found
            }
        };
        match next {
            Some(s) => services.push(s),
            None => return Ok(services),
        }
    }
}

/// The quota cost of a stored message.
fn record_cost(service: &str, m: &MessageRecord) -> u64 {
    message_cost(
        service.len(),
        m.key.as_ref().map_or(0, Vec::len),
        m.payload.len(),
    )
}

fn set_format(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    meta.insert(KEY_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
    Ok(())
}

fn init_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    set_format(txn)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(DEAD)?;
    txn.open_table(COMPLETED)?;
    txn.open_table(COMPLETED_BY_TIME)?;
    txn.open_table(FLOORS)?;
    Ok(())
}

fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    match meta.get(key)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("meta {key} is not a u64")))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

fn add_used_bytes(meta: &mut redb::Table<'_, &str, &[u8]>, delta: i128) -> Result<(), StoreError> {
    let used = i128::from(meta_u64(meta, KEY_USED_BYTES)?.unwrap_or(0));
    let new = u64::try_from((used + delta).max(0)).unwrap_or(u64::MAX);
    meta.insert(KEY_USED_BYTES, new.to_be_bytes().as_slice())?;
    Ok(())
}

/// Opens the database file, turning every failure into a typed error.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    // redb checks some invariants of the file with debug assertions; a damaged file must be
    // an error, never a panic, so a panic while opening is reported as corruption (the
    // workspace also builds redb without debug assertions).
    let opened =
        std::panic::catch_unwind(|| Database::builder().set_cache_size(cache_bytes).create(path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(StoreError::Corrupt(format!(
            "{} cannot be opened",
            path.display()
        ))),
    }
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
        redb::DatabaseError::UpgradeRequired(v) => StoreError::Foreign {
            path: path.to_owned(),
            detail: format!("a redb database of file format {v}"),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Foreign {
                path: path.to_owned(),
                detail: io.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Io {
            path: path.to_owned(),
            source,
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(d)) => StoreError::Corrupt(d),
        other => StoreError::database(other),
    }
}

/// Iterator over the outbox; see [`Store::outbox`].
pub struct OutboxIter {
    range: redb::Range<'static, (&'static str, u64), &'static [u8]>,
}

impl std::fmt::Debug for OutboxIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxIter")
    }
}

impl Iterator for OutboxIter {
    type Item = Result<StoredMessage, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.range.next()?;
        Some(item.map_err(StoreError::from).and_then(|(k, v)| {
            let (service, id) = k.value();
            let rec = decode::<MessageRecord>(v.value(), "message")?;
            Ok(StoredMessage::of(service, id, rec))
        }))
    }
}

/// Iterator over the dead letters; see [`Store::dead_letters`].
pub struct DeadLetterIter {
    range: redb::Range<'static, u64, &'static [u8]>,
}

impl std::fmt::Debug for DeadLetterIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadLetterIter")
    }
}

impl Iterator for DeadLetterIter {
    type Item = Result<StoredDeadLetter, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.range.next()?;
        Some(item.map_err(StoreError::from).and_then(|(k, v)| {
            let rec = decode::<DeadRecord>(v.value(), "dead letter")?;
            Ok(StoredDeadLetter::of(k.value(), rec))
        }))
    }
}

#[cfg(test)]
mod tests;
