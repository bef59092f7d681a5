//! The metrics the SDK records, in one table with their HELP text.
//!
//! The SDK records through the [`metrics`] facade into whatever recorder the application
//! installs (for example `metrics-exporter-prometheus`), and records nothing when none is
//! installed. [`describe_metrics`] gives every series its HELP text and type, so a
//! Prometheus exposition passes `promtool check metrics`; [`PeerBuilder::start`] calls it,
//! and an application that installs its recorder after starting a peer calls it again.
//!
//! [`PeerBuilder::start`]: crate::PeerBuilder::start

/// Dial attempts that failed, by `cause` (the [`Cause`](crate::Cause) code).
pub const DIAL_FAILURES_TOTAL: &str = "peer_sdk_dial_failures_total";
/// Messages that became dead letters.
pub const DEAD_LETTERS_TOTAL: &str = "peer_sdk_dead_letters_total";
/// Dead letters dropped because the application's dead-letter channel was full.
pub const DEAD_LETTERS_DROPPED_TOTAL: &str = "peer_sdk_dead_letters_dropped_total";
/// Whether the last directory request got an answer (1) or not (0).
pub const DIRECTORY_AVAILABLE: &str = "peer_sdk_directory_available";
/// Registrations made again after the directory forgot the peer's instance.
pub const REREGISTRATIONS_TOTAL: &str = "peer_sdk_reregistrations_total";

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Every metric the SDK records: name, kind and HELP text. Names carry their unit (none of
/// them measures seconds or bytes today) and counters end in `_total`.
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        DIAL_FAILURES_TOTAL,
        MetricKind::Counter,
        "Dial attempts to other instances that failed, by cause",
    ),
    (
        DEAD_LETTERS_TOTAL,
        MetricKind::Counter,
        "Messages given up on (retries or time exhausted, refused) and kept as dead letters",
    ),
    (
        DEAD_LETTERS_DROPPED_TOTAL,
        MetricKind::Counter,
        "Dead letters dropped because the application's dead-letter channel was full",
    ),
    (
        DIRECTORY_AVAILABLE,
        MetricKind::Gauge,
        "1 when the last request to the directory got an answer, 0 when none answered",
    ),
    (
        REREGISTRATIONS_TOTAL,
        MetricKind::Counter,
        "Registrations made again after the directory no longer knew this instance",
    ),
];

/// Describes every SDK metric (HELP text and type) to the installed recorder. Idempotent;
/// does nothing without a recorder.
pub fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(name, help),
            MetricKind::Gauge => metrics::describe_gauge!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_every_name_is_the_sdk_s() {
        for &(name, kind, help) in METRICS {
            assert!(name.starts_with("peer_sdk_") && !help.is_empty(), "{name}");
            assert_eq!(
                kind == MetricKind::Counter,
                name.ends_with("_total"),
                "{name}"
            );
        }
    }

    /// Recording sites use the constants above: a `"peer_sdk_` literal anywhere else in
    /// the source would be a metric without an entry here.
    #[test]
    fn no_metric_name_is_spelled_outside_this_table() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut scanned = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/metrics.rs")
                {
                    scanned += 1;
                    let text = std::fs::read_to_string(&path).unwrap();
                    let quote = concat!("\"", "peer_sdk_");
                    assert!(!text.contains(quote), "{} names a metric", path.display());
                }
            }
        }
        assert!(scanned > 10, "only {scanned} files scanned");
    }
}
