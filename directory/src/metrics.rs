//! The Prometheus recorder: installed once per process, rendered on our own `/metrics` route.

use std::sync::OnceLock;

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

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "directory_registrations_total",
        "Registrations accepted (new, replaced or re-registered)"
    );
    describe_counter!(
        "directory_deregistrations_total",
        "Instances removed by clients"
    );
    describe_counter!(
        "directory_expirations_total",
        "Instances whose lease ran out"
    );
    describe_counter!(
        "directory_lookups_total",
        "Service and instance lookups served"
    );
    describe_counter!(
        "directory_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "directory_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_gauge!(
        "directory_instances",
        "Live instances in this node's registry"
    );
    describe_gauge!("directory_watchers", "Open watch streams");
    describe_gauge!(
        "directory_registry_estimated_bytes",
        Unit::Bytes,
        "Estimated bytes of every registry entry held (live and tombstones), charged against --max-registry-bytes"
    );
    describe_counter!(
        "directory_registry_replicated_refused_total",
        "Entries replicated from other nodes that this node refused because its registry was full (--max-instances or --max-registry-bytes): while it grows, this node differs from the cluster"
    );
    describe_counter!(
        "directory_persist_batches_total",
        "Batches of registry changes committed to the data directory (one transaction and fsync each)"
    );
    describe_counter!(
        "directory_persist_errors_total",
        "Failed attempts to write registry changes to the data directory (retried every second)"
    );
    describe_gossip();
}

/// HELP text of the gossip layer's metrics (recorded in `gossip/driver.rs`, `gossip/stream.rs`
/// and `gossip/settings.rs`).
fn describe_gossip() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "directory_gossip_datagrams_sent_total",
        "Gossip UDP datagrams sent (membership and piggybacked entries)"
    );
    describe_counter!(
        "directory_gossip_bytes_sent_total",
        Unit::Bytes,
        "Bytes of gossip UDP datagrams sent, encryption envelope included"
    );
    describe_counter!(
        "directory_gossip_entries_applied_total",
        "Entries from other nodes merged into this node's registry (newer than its copy)"
    );
    describe_gauge!(
        "directory_gossip_members_alive",
        "Cluster members this node sees alive or suspect, itself included"
    );
    describe_counter!(
        "directory_gossip_members_failed_total",
        "Members this node declared dead (failed probes and suspicion)"
    );
    describe_counter!(
        "directory_gossip_dropped_packets_total",
        "Gossip datagrams and anti-entropy frames dropped, by reason"
    );
    describe_counter!(
        "directory_gossip_syncs_total",
        "Anti-entropy sessions this node opened, by result (ok, failed)"
    );
    crate::gossip::describe_metrics();
}
