//! A registration's TTL health check, kept in reserved meta keys so that it replicates
//! with the record: the Consul-compatible API sets it, and every reader (Consul health
//! queries, DNS) derives the same status from it here.

use std::time::SystemTime;

use super::Record;

/// Reserved meta key holding the check's TTL.
pub const CHECK_TTL_META: &str = "consul-check-ttl";
/// Reserved meta key holding the check's last set status.
pub const STATUS_META: &str = "consul-check-status";
/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Passing.
    Passing,
    /// Warning (not passing: `?passing` leaves it out).
    Warning,
    /// Critical.
    Critical,
}

impl CheckStatus {
    /// Consul's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "passing" => Some(Self::Passing),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// Whether `record` has a TTL check (was registered through the Consul API with one).
pub fn has_check(record: &Record) -> bool {
    record.meta.get(CHECK_TTL_META).is_some()
}

/// The last status set on `record`'s check (passing without a check).
pub fn set_status(record: &Record) -> CheckStatus {
    record
        .meta
        .get(STATUS_META)
        .and_then(CheckStatus::parse)
        .unwrap_or(CheckStatus::Passing)
}

/// The check's status at wall time `now`, and its output.
pub fn status_at(record: &Record, now: SystemTime) -> (CheckStatus, &'static str) {
    let ttl = record
        .meta
        .get(CHECK_TTL_META)
        .and_then(|t| humantime::parse_duration(t).ok());
    let Some(ttl) = ttl else {
        return (CheckStatus::Passing, "lease is live");
    };
    let renewed = record.lease_expires_at - record.ttl.duration();
    if now > renewed + ttl {
        return (CheckStatus::Critical, "TTL expired");
    }
    (set_status(record), "")
}
