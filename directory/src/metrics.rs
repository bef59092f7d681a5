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
    describe_counter!(
        "directory_dns_queries_total",
        "DNS queries answered, by response code (noerror, nxdomain, refused, formerr, notimp, other)"
    );
}
