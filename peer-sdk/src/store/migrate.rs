//! Migration of older store formats to [`super::FORMAT_VERSION`], at open.
//!
//! A migration runs in one write transaction together with the new format number: a
//! crash during it leaves the store as it was (still the old format), and the next open
//! migrates again. Records are rewritten in chunks read by key range, so no table is ever
//! held wholly in memory (redb spills the transaction's dirty pages to the file).

use super::records::{DeadRecord, DeadRecordV1, MessageRecord, MessageRecordV1, decode, encode};
use super::{BULK_CHUNK, DEAD, OUTBOX, StoreError};
use redb::{ReadableTable, WriteTransaction};
use std::ops::Bound;

/// Rewrites every record of format 1 in the format of this build.
pub(super) fn from_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    outbox_v1(txn)?;
    dead_letters_v1(txn)
}

fn outbox_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut after: Option<(String, u64)> = None;
    loop {
        let mut chunk = Vec::new();
        {
            let range = match &after {
                None => outbox.range::<(&str, u64)>(..)?,
                Some((s, id)) => outbox
                    .range::<(&str, u64)>((Bound::Excluded((s.as_str(), *id)), Bound::Unbounded))?,
            };
            for item in range.take(BULK_CHUNK) {
                let (k, v) = item?;
                let (service, id) = k.value();
                let old = decode::<MessageRecordV1>(v.value(), "message (format 1)")?;
                chunk.push((service.to_owned(), id, MessageRecord::from(old)));
            }
        }
        for (service, id, rec) in &chunk {
            outbox.insert((service.as_str(), *id), encode(rec).as_slice())?;
        }
        if chunk.len() < BULK_CHUNK {
            return Ok(());
        }
        after = chunk.pop().map(|(s, id, _)| (s, id));
    }
}

fn dead_letters_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut dead = txn.open_table(DEAD)?;
    let mut from = 0u64;
    loop {
        let mut chunk = Vec::new();
        for item in dead.range(from..)?.take(BULK_CHUNK) {
            let (k, v) = item?;
            let old = decode::<DeadRecordV1>(v.value(), "dead letter (format 1)")?;
            chunk.push((k.value(), DeadRecord::from(old)));
        }
        for (id, rec) in &chunk {
            dead.insert(*id, encode(rec).as_slice())?;
        }
        match chunk.last() {
            Some((id, _)) if chunk.len() == BULK_CHUNK => from = id.saturating_add(1),
            _ => return Ok(()),
        }
    }
}
