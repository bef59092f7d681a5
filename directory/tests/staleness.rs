//! Staleness on the directory's own lookups: headers, the JSON field and `?max_stale=`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use directory::Config;
use directory::gossip::ClusterContact;
use directory::http::{AppState, router};
use directory::registry::Registry;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A router whose node last heard from its cluster `silent_for` ago (`None`: no cluster).
fn app(silent_for: Option<Duration>) -> Router {
    let config = Config::for_test();
    let registry = Registry::new(config.registry.clone());
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(
        registry,
        Arc::new(config),
        metrics,
        CancellationToken::new(),
    );
    let state = match silent_for {
        None => state,
        Some(d) => state.with_contact(Arc::new(ClusterContact::clustered(Instant::now() - d))),
    };
    router(state)
}

async fn get(app: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

async fn register(app: &Router) {
    let body = json!({"address": "127.0.0.1:7000"}).to_string();
    let request = Request::put("/v1/services/orders/instances/o-1")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_lookup_answer_carries_staleness_in_headers_and_json() {
    let app = app(Some(Duration::from_secs(5)));
    register(&app).await;
    for path in [
        "/v1/services",
        "/v1/services/orders",
        "/v1/services/orders?tag=x",
    ] {
        let (status, headers, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let ms: u64 = headers["x-directory-last-contact"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((5000..60_000).contains(&ms), "{path}: {ms}");
        assert_eq!(headers["x-directory-isolated"], "true", "{path}");
        assert_eq!(body["staleness"]["isolated"], true, "{path}");
        assert!(
            body["staleness"]["last_contact_ms"].as_u64().unwrap() >= 5000,
            "{path}"
        );
    }
    let (status, headers, body) = get(&app, "/v1/services/orders/instances/o-1").await;
    assert_eq!(
        (status, body["instance"].as_str()),
        (StatusCode::OK, Some("o-1"))
    );
    assert_eq!(headers["x-directory-isolated"], "true");
}

#[tokio::test]
async fn a_standalone_node_reports_fresh_and_not_isolated() {
    let app = app(None);
    register(&app).await;
    let (_, headers, body) = get(&app, "/v1/services/orders?max_stale=1ms").await;
    assert_eq!(headers["x-directory-last-contact"], "0");
    assert_eq!(headers["x-directory-isolated"], "false");
    assert_eq!(
        body["staleness"],
        json!({"last_contact_ms": 0, "isolated": false})
    );
    assert_eq!(body["instances"][0]["instance"], "o-1");
}

#[tokio::test]
async fn max_stale_refuses_an_answer_older_than_asked_with_503_too_stale() {
    let app = app(Some(Duration::from_secs(10)));
    register(&app).await;
    for path in [
        "/v1/services?max_stale=2s",
        "/v1/services/orders?max_stale=2s",
        "/v1/services/orders/instances/o-1?max_stale=2s",
    ] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["error"]["code"], "too_stale", "{path}");
    }
    let (status, _, body) = get(&app, "/v1/services/orders?max_stale=1m").await;
    assert_eq!(
        (status, body["instances"][0]["instance"].as_str()),
        (StatusCode::OK, Some("o-1"))
    );
    let (status, _, body) = get(&app, "/v1/services?max_stale=later").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
}

mod common;

async fn clustered_node(
    name: &str,
    key: &directory::gossip::ClusterKey,
    join: Option<std::net::SocketAddr>,
) -> directory::Server {
    use directory::gossip::{GossipSettings, Security};
    let mut config = Config::for_test();
    config.registry.node = name.parse().unwrap();
    let mut cluster = GossipSettings::for_test(Security::Key(key.clone()));
    cluster.join = join.iter().map(ToString::to_string).collect();
    config.cluster = Some(cluster);
    directory::Server::start(config).await.expect("node starts")
}

async fn staleness_of(server: &directory::Server) -> Value {
    let url = common::url(server, "/v1/services");
    let body: Value = common::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["staleness"].clone()
}

#[tokio::test]
async fn a_lone_clustered_node_is_isolated_until_a_member_joins_and_gossips() {
    let key = directory::gossip::ClusterKey::generate();
    let first = clustered_node("node-1", &key, None).await;
    assert_eq!(staleness_of(&first).await["isolated"], true);
    // Alone, the node counts its silence from its start: let that grow past what a fresh
    // contact reports, so the check below can only pass through real gossip.
    let silent = common::wait_until(Duration::from_secs(5), || async {
        staleness_of(&first).await["last_contact_ms"].as_u64() >= Some(1500)
    })
    .await;
    assert!(silent);
    let second = clustered_node("node-2", &key, first.gossip_addr()).await;
    for node in [&first, &second] {
        let fresh = common::wait_until(Duration::from_secs(15), || async {
            let s = staleness_of(node).await;
            s["isolated"] == false && s["last_contact_ms"].as_u64().is_some_and(|ms| ms < 1000)
        })
        .await;
        assert!(fresh, "{:?}", staleness_of(node).await);
    }
    second.shutdown().await;
    first.shutdown().await;
}
