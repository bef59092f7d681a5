//! The Prometheus recorder: installed once per process, rendered on our own `/metrics` route.

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 50 µs to 10 s. Lookups sit at the low end; blocking queries
/// and watch streams at the high end (they are long by design).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use. Several servers
/// in one process (tests) share it. If the embedding program installed another global
/// recorder first, our handle renders only what is recorded through it (nothing) and a
/// warning is logged.
pub fn prometheus_handle() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full("directory_http_request_duration_seconds".into()),
        LATENCY_BUCKETS,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "latency buckets rejected; using summaries");
            PrometheusBuilder::new()
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a global metrics recorder is already installed; /metrics will be empty");
    }
    describe();
    handle
}

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric this crate records: name, kind, unit and HELP text. [`describe`] registers
/// them all, so every series on `/metrics` has HELP and TYPE lines (`promtool check metrics`);
/// a test checks that every `counter!`/`gauge!`/`histogram!` name in the source is listed.
const METRICS: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        "directory_registrations_total",
        Kind::Counter,
        None,
        "Registrations accepted (new, replaced or re-registered)",
    ),
    (
        "directory_deregistrations_total",
        Kind::Counter,
        None,
        "Instances removed by clients",
    ),
    (
        "directory_expirations_total",
        Kind::Counter,
        None,
        "Instances whose lease ran out",
    ),
    (
        "directory_lookups_total",
        Kind::Counter,
        None,
        "Service and instance lookups served",
    ),
    (
        "directory_http_requests_total",
        Kind::Counter,
        None,
        "HTTP requests by route, method and status",
    ),
    (
        "directory_http_request_duration_seconds",
        Kind::Histogram,
        Some(Unit::Seconds),
        "HTTP request latency by route",
    ),
    (
        "directory_http_accept_errors_total",
        Kind::Counter,
        None,
        "Failed accepts on the HTTP listener (each one backs off)",
    ),
    (
        "directory_http_tls_handshake_failures_total",
        Kind::Counter,
        None,
        "TLS handshakes on the HTTP listener that failed or timed out",
    ),
    (
        "directory_instances",
        Kind::Gauge,
        None,
        "Live instances in this node's registry",
    ),
    (
        "directory_watchers",
        Kind::Gauge,
        None,
        "Open watch streams",
    ),
    (
        "directory_gossip_datagrams_sent_total",
        Kind::Counter,
        None,
        "Gossip datagrams (membership and broadcasts) sent over UDP",
    ),
    (
        "directory_gossip_bytes_sent_total",
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes of gossip datagrams sent over UDP, after sealing",
    ),
    (
        "directory_gossip_datagrams_received_total",
        Kind::Counter,
        None,
        "Gossip datagrams received over UDP, before authentication (dropped ones included)",
    ),
    (
        "directory_gossip_bytes_received_total",
        Kind::Counter,
        Some(Unit::Bytes),
        "Bytes of gossip datagrams received over UDP, sealed as they arrived",
    ),
    (
        "directory_gossip_dropped_packets_total",
        Kind::Counter,
        None,
        "Gossip datagrams and frames dropped, by reason",
    ),
    (
        "directory_gossip_entries_applied_total",
        Kind::Counter,
        None,
        "Registry entries received by gossip and handed to the registry",
    ),
    (
        "directory_gossip_members_alive",
        Kind::Gauge,
        None,
        "Cluster members this node sees alive, itself included",
    ),
    (
        "directory_gossip_members_failed_total",
        Kind::Counter,
        None,
        "Cluster members this node saw go down",
    ),
    (
        "directory_gossip_syncs_total",
        Kind::Counter,
        None,
        "Anti-entropy sessions with another node, by result (ok, failed)",
    ),
    (
        "directory_registry_estimated_bytes",
        Kind::Gauge,
        Some(Unit::Bytes),
        "Estimated bytes of every registry entry held (live and tombstones), charged against --max-registry-bytes",
    ),
    (
        "directory_registry_replicated_refused_total",
        Kind::Counter,
        None,
        "Entries replicated from other nodes that this node refused because its registry was full (--max-instances or --max-registry-bytes): while it grows, this node differs from the cluster",
    ),
    (
        "directory_persist_batches_total",
        Kind::Counter,
        None,
        "Batches of registry changes committed to the data directory (one transaction and fsync each)",
    ),
    (
        "directory_persist_errors_total",
        Kind::Counter,
        None,
        "Failed attempts to write registry changes to the data directory (retried every second)",
    ),
    (
        "directory_gossip_unauthenticated_connections_closed_total",
        Kind::Counter,
        None,
        "Anti-entropy connections closed before their first authenticated frame, by reason (timeout: nothing authenticated within the handshake timeout; evicted: the table of waiting connections was full)",
    ),
    (
        "directory_dns_tcp_connections",
        Kind::Gauge,
        None,
        "Open DNS-over-TCP connections (capped by --dns-max-tcp-connections)",
    ),
    (
        "directory_dns_tcp_accept_errors_total",
        Kind::Counter,
        None,
        "Failed accepts on the DNS TCP listener (each followed by a backoff)",
    ),
    (
        "directory_dns_queries_total",
        Kind::Counter,
        None,
        "DNS queries answered, by response code (noerror, nxdomain, refused, formerr, notimp, other)",
    ),
    (
        "directory_replication_clock_ahead_rejected_total",
        Kind::Counter,
        None,
        "Replicated entries refused because their version's clock was more than --max-clock-drift ahead of this node's wall clock",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        None,
        "Always 1; the labels say which build runs (version)",
    ),
];

/// The build-information gauge: `directory_build_info{version="..."} 1`.
const BUILD_INFO: &str = "directory_build_info";

/// The HELP text of a metric of [`METRICS`].
pub(crate) fn help(name: &str) -> Option<&'static str> {
    METRICS.iter().find(|m| m.0 == name).map(|m| m.3)
}

fn describe() {
    for &(name, kind, unit, help) in METRICS {
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process_collector().describe();
}

/// The collector of the standard `process_*` metrics (CPU seconds, resident and virtual
/// memory, open and maximum file descriptors, threads, start time).
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics (`process_*`) now; call before each rendering of `/metrics`.
pub fn collect_process_metrics() {
    process_collector().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names recorded in `source`: the string literal after each
    /// `counter!(`, `gauge!(` or `histogram!(`.
    fn recorded_names(source: &str) -> Vec<String> {
        let mut names = Vec::new();
        for macro_call in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in source.match_indices(macro_call) {
                let rest = source[at + macro_call.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    let name = &literal[..literal.find('"').unwrap_or(0)];
                    // Skips this test's own `"counter!("` strings.
                    if !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        names
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    #[test]
    fn every_recorded_metric_has_help_text() {
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut seen = 0;
        for (path, text) in &files {
            for name in recorded_names(text) {
                seen += 1;
                assert!(
                    METRICS.iter().any(|(listed, ..)| *listed == name),
                    "{path} records {name:?}, which has no entry (HELP text) in metrics::METRICS"
                );
            }
        }
        assert!(
            seen > 10,
            "the scan found only {seen} metrics: is it broken?"
        );
    }

    #[test]
    fn names_carry_their_unit_and_counters_end_in_total() {
        for &(name, kind, unit, help) in METRICS {
            assert!(!help.is_empty(), "{name}");
            if kind == Kind::Counter {
                assert!(name.ends_with("_total"), "{name}");
            }
            match unit {
                Some(Unit::Seconds) => assert!(name.contains("_seconds"), "{name}"),
                Some(Unit::Bytes) => assert!(name.contains("_bytes"), "{name}"),
                _ => {}
            }
        }
    }
}
