//! The SDK's metrics rendered by metrics-exporter-prometheus: every `peer_sdk_` family has
//! HELP and TYPE lines. With `PEER_SDK_METRICS_OUT=FILE` the exposition is also written
//! to FILE, which `.ci/checks/promtool.sh` gives to `promtool check metrics`.

use metrics_exporter_prometheus::PrometheusBuilder;
use peer_sdk::metrics::{METRICS, MetricKind};

/// The exposition after describing the SDK's metrics and recording each once.
fn exposition() -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        peer_sdk::describe_metrics();
        for &(name, kind, _) in METRICS {
            match kind {
                MetricKind::Counter => metrics::counter!(name, "cause" => "timeout").increment(1),
                MetricKind::Gauge => metrics::gauge!(name).set(1.0),
            }
        }
    });
    handle.render()
}

#[test]
fn every_peer_sdk_series_has_help_and_type() {
    let text = exposition();
    if let Some(path) = std::env::var_os("PEER_SDK_METRICS_OUT") {
        std::fs::write(path, &text).unwrap();
    }
    let families: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    assert_eq!(families.len(), METRICS.len(), "{text}");
    for &(name, kind, help) in METRICS {
        assert!(
            text.contains(&format!("# HELP {name} {help}\n")),
            "{name}: {text}"
        );
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {text}"
        );
    }
}
