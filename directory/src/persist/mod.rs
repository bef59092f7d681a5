//! The data directory (`--data-dir`): the registry persisted in an embedded, crash-safe
//! database (redb) and restored at start.
//!
//! Layout:
//! - this module — [`DataDir`]: open (format check, lock), load, start the writer; the
//!   typed [`PersistError`];
//! - `record` — the on-disk form of one entry (postcard, absolute wall-clock times);
//! - `legacy` — reading entries written before registrations had subscriptions;
//! - `writer` — the group committer: one thread that takes the registry's journal
//!   ([`crate::registry::Journal`]), coalesces changes by key and writes every batch in
//!   one transaction with one fsync.
//!
//! Tables (format [`FORMAT`]): `meta` (format marker, last change index, last clock
//! reading) and `entries`: `(service, instance)` → entry, live records and tombstones.
//!
//! What it guarantees: a registration or deregistration answered by the HTTP API is on
//! disk (the handler waits for its batch, [`crate::registry::Registry::flushed`]);
//! renewals and entries from other nodes are written in the next batch without anyone
//! waiting. redb commits are atomic: a crash leaves the last committed batch.

mod legacy;
mod record;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::registry::Restored;
use record::StoredEntry;
pub use writer::Writer;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "registry.redb";
/// The format marker this build reads and writes.
pub const FORMAT: &[u8] = b"directory-registry/1";

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("entries");
const KEY_FORMAT: &str = "format";
const KEY_INDEX: &str = "index";
const KEY_CLOCK: &str = "clock";

/// The data directory could not be used. Nothing was changed on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The directory or file cannot be created or read. Remedy: check the path and its
    /// permissions.
    #[error("data directory I/O error at {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process has the file open. Remedy: each node needs its own data directory;
    /// stop the other node first.
    #[error("the data directory file {0} is in use by another process")]
    Locked(PathBuf),
    /// The file is not a directory registry (another program's file, another redb
    /// database, or a directory registry of another format). Remedy: point `--data-dir`
    /// at the right directory, or move the file aside to start empty.
    #[error("{path} is not a directory registry: {detail}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },
    /// The file is damaged. Remedy: move it aside (the node then starts empty and gets the
    /// cluster's state by anti-entropy) or restore a backup.
    #[error("the data directory file is corrupt: {0}")]
    Corrupt(String),
    /// The database failed (disk full, I/O error while committing).
    #[error("data directory database error: {0}")]
    Database(String),
}

impl From<redb::StorageError> for PersistError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(d) => Self::Corrupt(d),
            other => Self::Database(other.to_string()),
        }
    }
}

macro_rules! database_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for PersistError {
            fn from(e: $t) -> Self {
                match redb::Error::from(e) {
                    redb::Error::Corrupted(d) => Self::Corrupt(d),
                    other => Self::Database(other.to_string()),
                }
            }
        }
    )*};
}
database_errors!(redb::TransactionError, redb::TableError, redb::CommitError);

/// What was read back at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every stored entry, as of the time of loading.
    pub entries: Vec<Restored>,
    /// The last change index handed out before the stop.
    pub index: u64,
    /// The last clock reading written before the stop.
    pub clock: u64,
}

/// An open data directory. See the [module docs](self).
#[derive(Clone)]
pub struct DataDir {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir").field("path", &self.path).finish()
    }
}

impl DataDir {
    /// Opens (creating if needed) the registry in directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, PersistError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_database(&path)?;
        let data_dir = Self {
            db: Arc::new(db),
            path,
        };
        data_dir.check_format()?;
        Ok(data_dir)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every entry back, with leases and tombstone ages as of wall time `now`.
    pub fn load(&self, now: SystemTime) -> Result<Loaded, PersistError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let mut loaded = Loaded {
            index: meta_u64(&meta, KEY_INDEX)?.unwrap_or(0),
            clock: meta_u64(&meta, KEY_CLOCK)?.unwrap_or(0),
            entries: Vec::new(),
        };
        for row in txn.open_table(ENTRIES)?.iter()? {
            let (key, value) = row?;
            let corrupt = |e: &dyn std::fmt::Display| {
                let (service, instance) = key.value();
                PersistError::Corrupt(format!("entry {service}/{instance}: {e}"))
            };
            let stored = StoredEntry::decode(value.value()).map_err(|e| corrupt(&e))?;
            loaded.clock = loaded.clock.max(stored.version().hlc);
            loaded
                .entries
                .push(stored.restored(now).map_err(|e| corrupt(&e))?);
        }
        Ok(loaded)
    }

    /// Starts the writer thread; hand the journal to the registry.
    pub fn start_writer(&self) -> Result<(crate::registry::Journal, Writer), PersistError> {
        Writer::start(self.db.clone())
    }

    fn check_format(&self) -> Result<(), PersistError> {
        let txn = self.db.begin_write()?;
        let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
        let found = if tables.iter().any(|t| t == META.name()) {
            let meta = txn.open_table(META)?;
            meta.get(KEY_FORMAT)?.map(|v| v.value().to_vec())
        } else {
            None
        };
        match found {
            Some(format) if format == FORMAT => txn.abort()?,
            Some(format) => {
                let detail = format!("format {:?}", String::from_utf8_lossy(&format));
                return Err(self.foreign(detail));
            }
            None if !tables.is_empty() => {
                return Err(self.foreign("a redb database without the registry's metadata".into()));
            }
            None => {
                txn.open_table(META)?.insert(KEY_FORMAT, FORMAT)?;
                txn.open_table(ENTRIES)?;
                txn.commit()?;
            }
        }
        Ok(())
    }

    fn foreign(&self, detail: String) -> PersistError {
        PersistError::Foreign {
            path: self.path.clone(),
            detail,
        }
    }
}

fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, PersistError> {
    let Some(value) = meta.get(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = value
        .value()
        .try_into()
        .map_err(|_| PersistError::Corrupt(format!("meta {key} is not a u64")))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

fn open_database(path: &Path) -> Result<Database, PersistError> {
    // A damaged file must be an error, never a panic: a panic while opening is reported as
    // corruption (the workspace also builds redb without debug assertions).
    match std::panic::catch_unwind(|| Database::builder().create(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(PersistError::Corrupt(format!(
            "{} cannot be opened",
            path.display()
        ))),
    }
}

fn open_error(path: &Path, e: redb::DatabaseError) -> PersistError {
    let foreign = |detail: String| PersistError::Foreign {
        path: path.to_owned(),
        detail,
    };
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => PersistError::Locked(path.to_owned()),
        redb::DatabaseError::UpgradeRequired(v) => foreign(format!("a redb file of format {v}")),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            foreign(io.to_string())
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => PersistError::Io {
            path: path.to_owned(),
            source,
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(d)) => PersistError::Corrupt(d),
        other => PersistError::Database(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
