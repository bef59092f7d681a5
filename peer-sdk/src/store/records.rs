//! On-disk records of the store (format version [`FORMAT_VERSION`]), encoded with postcard,
//! and the conversions between them and the SDK's types. Every record change that an older
//! build cannot read bumps the format version.

use crate::proto::{Cause, DeadLetter, DeadLetterReason, InstanceInfo};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version of the on-disk format written by this build. A store of format 1 is migrated
/// at open (see [`super::Store::open`]); any other version is refused with
/// [`super::StoreError::UnsupportedFormat`].
///
/// - 1: first format.
/// - 2: outbox records also hold the per-message ack timeout, maximum attempts and the
///   attempts made (`MessageRecord::ack_timeout_ms`, `max_attempts`, `attempts`).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format this build migrates from.
pub(crate) const OLDEST_MIGRATED_FORMAT: u32 = 1;

/// Milliseconds since the Unix epoch (0 before it; saturating far in the future).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The instance a broadcast copy is addressed to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TargetRecord {
    pub(crate) instance: String,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) fingerprint: Option<[u8; 32]>,
}

impl TargetRecord {
    pub(crate) fn of(inst: &InstanceInfo) -> Self {
        Self {
            instance: inst.instance.clone(),
            addr: inst.addr,
            fingerprint: inst.fingerprint,
        }
    }

    pub(crate) fn to_instance(&self, service: &str) -> Arc<InstanceInfo> {
        Arc::new(InstanceInfo::new(
            service,
            &self.instance,
            self.addr,
            self.fingerprint,
        ))
    }
}

/// One accepted, unresolved message (outbox table value; the key is (service, id)).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MessageRecord {
    pub(crate) target: Option<TargetRecord>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) request: bool,
    pub(crate) no_responders: bool,
    pub(crate) deadline_ms: u64,
    pub(crate) accepted_ms: u64,
    /// Per-message ack timeout; `None` uses the peer's configured one.
    pub(crate) ack_timeout_ms: Option<u64>,
    /// Per-message maximum attempts; `None` uses the peer's configured one.
    pub(crate) max_attempts: Option<u32>,
    /// Attempts recorded as failed and retried (see `StoreOp::Attempted`).
    pub(crate) attempts: u32,
}

/// A message record of format 1 (read only to migrate it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MessageRecordV1 {
    pub(crate) target: Option<TargetRecord>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) request: bool,
    pub(crate) no_responders: bool,
    pub(crate) deadline_ms: u64,
    pub(crate) accepted_ms: u64,
}

impl From<MessageRecordV1> for MessageRecord {
    /// Format 1 kept no per-message options: they were the configured ones.
    fn from(r: MessageRecordV1) -> Self {
        Self {
            target: r.target,
            key: r.key,
            payload: r.payload,
            request: r.request,
            no_responders: r.no_responders,
            deadline_ms: r.deadline_ms,
            accepted_ms: r.accepted_ms,
            ack_timeout_ms: None,
            max_attempts: None,
            attempts: 0,
        }
    }
}

/// A dead-letter record of format 1 (read only to migrate it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeadRecordV1 {
    pub(crate) service: String,
    pub(crate) message: MessageRecordV1,
    pub(crate) reason: ReasonRecord,
    pub(crate) attempts: u32,
    pub(crate) last_instance: Option<String>,
    pub(crate) at_ms: u64,
}

impl From<DeadRecordV1> for DeadRecord {
    fn from(r: DeadRecordV1) -> Self {
        Self {
            service: r.service,
            message: r.message.into(),
            reason: r.reason,
            attempts: r.attempts,
            last_instance: r.last_instance,
            at_ms: r.at_ms,
        }
    }
}

/// Why a message was dead-lettered, as stored. Postcard numbers enum variants in order:
/// new variants go at the end, and a variant is never reordered or removed, so records
/// written by an older build of the same format still decode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum ReasonRecord {
    /// Written before failure causes were typed; read as a deadline without a cause.
    UntypedDeadlineExceeded {
        last_error: Option<String>,
    },
    Rejected {
        reason: String,
    },
    ShuttingDown,
    NoResponders,
    DeadlineExceeded {
        last_error: Option<Cause>,
    },
    AttemptsExhausted {
        last_error: Cause,
    },
    IdentityMismatch {
        instance: String,
        detail: String,
    },
}

impl From<&DeadLetterReason> for ReasonRecord {
    fn from(r: &DeadLetterReason) -> Self {
        match r.clone() {
            DeadLetterReason::DeadlineExceeded { last_error } => {
                Self::DeadlineExceeded { last_error }
            }
            DeadLetterReason::AttemptsExhausted { last_error } => {
                Self::AttemptsExhausted { last_error }
            }
            DeadLetterReason::IdentityMismatch { instance, detail } => {
                Self::IdentityMismatch { instance, detail }
            }
            DeadLetterReason::Rejected { reason } => Self::Rejected { reason },
            DeadLetterReason::ShuttingDown => Self::ShuttingDown,
            DeadLetterReason::NoResponders => Self::NoResponders,
        }
    }
}

impl From<ReasonRecord> for DeadLetterReason {
    fn from(r: ReasonRecord) -> Self {
        match r {
            ReasonRecord::UntypedDeadlineExceeded { .. } => {
                Self::DeadlineExceeded { last_error: None }
            }
            ReasonRecord::DeadlineExceeded { last_error } => Self::DeadlineExceeded { last_error },
            ReasonRecord::AttemptsExhausted { last_error } => {
                Self::AttemptsExhausted { last_error }
            }
            ReasonRecord::IdentityMismatch { instance, detail } => {
                Self::IdentityMismatch { instance, detail }
            }
            ReasonRecord::Rejected { reason } => Self::Rejected { reason },
            ReasonRecord::ShuttingDown => Self::ShuttingDown,
            ReasonRecord::NoResponders => Self::NoResponders,
        }
    }
}

/// A dead letter (dead-letter table value; the key is the message id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeadRecord {
    pub(crate) service: String,
    pub(crate) message: MessageRecord,
    pub(crate) reason: ReasonRecord,
    pub(crate) attempts: u32,
    pub(crate) last_instance: Option<String>,
    pub(crate) at_ms: u64,
}

impl DeadRecord {
    /// The record of `letter`, dead-lettered at `at_ms`; `message` is what was accepted.
    pub(crate) fn of(letter: &DeadLetter, message: MessageRecord, at_ms: u64) -> Self {
        Self {
            service: letter.service.clone(),
            message,
            reason: ReasonRecord::from(&letter.reason),
            attempts: letter.attempts,
            last_instance: letter.last_instance.clone(),
            at_ms,
        }
    }
}

/// A completed delivery on the receiver side (completed table value; key (session, id)).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CompletedRecord {
    pub(crate) at_ms: u64,
    /// The reply of a request; `None` for a one-way message.
    pub(crate) reply: Option<Vec<u8>>,
}

/// The peer's persisted identity: certificate and private key (DER).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdentityRecord {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

/// Encodes a record (postcard never fails on these types: no maps with non-string keys,
/// no unsized sequences).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a record; a failure means the file is corrupt.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, super::StoreError> {
    postcard::from_bytes(bytes).map_err(|e| super::StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_a_corrupt_error() {
        let m = MessageRecord {
            target: None,
            key: Some(b"k".to_vec()),
            payload: b"hello".to_vec(),
            request: true,
            no_responders: false,
            deadline_ms: 123,
            accepted_ms: 100,
            ack_timeout_ms: Some(2500),
            max_attempts: Some(3),
            attempts: 2,
        };
        let back: MessageRecord = decode(&encode(&m), "message").unwrap();
        assert_eq!(back, m);
        let typed = DeadLetterReason::AttemptsExhausted {
            last_error: Cause::Nacked {
                instance: "i".into(),
                reason: "busy".into(),
            },
        };
        let rec: ReasonRecord = decode(&encode(&ReasonRecord::from(&typed)), "reason").unwrap();
        assert_eq!(DeadLetterReason::from(rec), typed);
        assert!(matches!(
            decode::<DeadRecord>(&[0xff, 0xff, 0xff], "dead letter"),
            Err(super::super::StoreError::Corrupt(_))
        ));
    }
}
