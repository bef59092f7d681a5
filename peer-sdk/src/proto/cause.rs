//! Why an attempt failed ([`Cause`]) and why a message was given up ([`DeadLetterReason`]):
//! typed, so callers match on what happened instead of parsing strings. The `detail` and
//! `reason` strings inside are for people (logs, the `peer` tool), never for matching.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What made the latest attempt of a message fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cause {
    /// The directory lists no instance of the service. A service nobody ever registered
    /// looks the same: the directory keeps no list of services apart from their instances.
    NoInstances,
    /// No directory answered the lookup of the service.
    DirectoryUnreachable {
        /// The last directory failure, for people.
        detail: String,
    },
    /// The instance could not be dialed, or its connection was lost.
    Unreachable {
        /// Instance name.
        instance: String,
        /// What the transport said, for people.
        detail: String,
    },
    /// The instance did not prove the identity the directory published for it (wrong
    /// certificate, or no fingerprint published). Never retried.
    IdentityMismatch {
        /// Instance name.
        instance: String,
        /// What the handshake said, for people.
        detail: String,
    },
    /// The instance neither acked nor signalled progress within the ack timeout.
    AckTimeout {
        /// Instance name.
        instance: String,
        /// The ack timeout that passed.
        after: Duration,
    },
    /// The handler (or an overloaded receiver) asked for a retry.
    Nacked {
        /// Instance name.
        instance: String,
        /// The handler's reason.
        reason: String,
    },
}

impl Cause {
    /// A stable snake_case name of the variant, for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoInstances => "no_instances",
            Self::DirectoryUnreachable { .. } => "directory_unreachable",
            Self::Unreachable { .. } => "unreachable",
            Self::IdentityMismatch { .. } => "identity_mismatch",
            Self::AckTimeout { .. } => "ack_timeout",
            Self::Nacked { .. } => "nacked",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoInstances => write!(f, "the service has no registered instance"),
            Self::DirectoryUnreachable { detail } => {
                write!(f, "no directory answered the lookup ({detail})")
            }
            Self::Unreachable { instance, detail } => write!(f, "{instance} unreachable: {detail}"),
            Self::IdentityMismatch { instance, detail } => {
                write!(f, "{instance} failed identity verification: {detail}")
            }
            Self::AckTimeout { instance, after } => {
                write!(f, "no ack from {instance} within {after:?}")
            }
            Self::Nacked { instance, reason } => write!(f, "{instance} nacked: {reason}"),
        }
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The deadline passed before any instance acked. `last_error` is the last failure
    /// seen (`None` when nothing failed, e.g. a message that waited behind its key).
    DeadlineExceeded {
        /// Last failure seen.
        last_error: Option<Cause>,
    },
    /// The message's maximum number of attempts was used up.
    AttemptsExhausted {
        /// The failure of the last attempt.
        last_error: Cause,
    },
    /// The chosen instance did not prove its published identity; not retried, because a
    /// wrong pin does not fix itself. Remedy: check the directory's fingerprint.
    IdentityMismatch {
        /// Instance name.
        instance: String,
        /// What the handshake said.
        detail: String,
    },
    /// A handler nacked it with [`super::NackAction::DeadLetter`].
    Rejected {
        /// Handler's reason.
        reason: String,
    },
    /// The peer shut down before it was acked (peers without a store only: with a store,
    /// unresolved messages stay in the outbox and resume at the next start).
    ShuttingDown,
    /// The service had no registered instance and the sender asked to fail at once
    /// (`SendOptions::no_responders`) instead of waiting for one.
    NoResponders,
}

impl DeadLetterReason {
    /// A stable snake_case name of the variant, for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::AttemptsExhausted { .. } => "attempts_exhausted",
            Self::IdentityMismatch { .. } => "identity_mismatch",
            Self::Rejected { .. } => "rejected",
            Self::ShuttingDown => "shutting_down",
            Self::NoResponders => "no_responders",
        }
    }

    /// The last failure behind a deadline or exhausted attempts.
    pub fn last_error(&self) -> Option<&Cause> {
        match self {
            Self::DeadlineExceeded { last_error } => last_error.as_ref(),
            Self::AttemptsExhausted { last_error } => Some(last_error),
            _ => None,
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DeadlineExceeded { last_error: None } => write!(f, "deadline passed"),
            Self::DeadlineExceeded {
                last_error: Some(e),
            } => write!(f, "deadline passed; last failure: {e}"),
            Self::AttemptsExhausted { last_error } => {
                write!(f, "attempts used up; last failure: {last_error}")
            }
            Self::IdentityMismatch { instance, detail } => {
                write!(f, "{instance} failed identity verification: {detail}")
            }
            Self::Rejected { reason } => write!(f, "rejected by the handler: {reason}"),
            Self::ShuttingDown => write!(f, "the peer shut down"),
            Self::NoResponders => {
                write!(f, "no responders: the service has no registered instance")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_their_last_cause() {
        let r = DeadLetterReason::DeadlineExceeded {
            last_error: Some(Cause::NoInstances),
        };
        assert_eq!(r.code(), "deadline_exceeded");
        assert_eq!(r.last_error().map(Cause::code), Some("no_instances"));
        assert_eq!(
            r.to_string(),
            "deadline passed; last failure: the service has no registered instance"
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<DeadLetterReason>(&json).unwrap(), r);
    }
}
