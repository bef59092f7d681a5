//! Handler tests through the router with `tower::ServiceExt::oneshot` (no sockets).

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use common::{bad_cases, snapshot};
use directory::Config;
use directory::http::{AppState, router};
use directory::registry::Registry;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn app() -> (Router, Registry) {
    app_with(Config::for_test())
}

fn app_with(config: Config) -> (Router, Registry) {
    let registry = Registry::new(config.registry.clone());
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(
        registry.clone(),
        Arc::new(config),
        metrics,
        CancellationToken::new(),
    );
    (router(state), registry)
}

async fn call(app: &Router, method: &str, path: &str, body: Option<String>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, value)
}

#[tokio::test]
async fn register_heartbeat_lookup_and_delete_through_the_router() {
    let (app, registry) = app();
    let body = json!({"address": "10.0.0.5:7000", "tags": ["a"]}).to_string();
    let (status, record) = call(&app, "PUT", "/v1/services/svc/instances/i-1", Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["address"], "10.0.0.5:7000");
    assert_eq!(registry.len(), 1);
    let (status, renewed) = call(
        &app,
        "POST",
        "/v1/services/svc/instances/i-1/heartbeat",
        None,
    )
    .await;
    assert_eq!(
        (status, renewed["index"].clone()),
        (StatusCode::OK, record["index"].clone())
    );
    let (status, view) = call(&app, "GET", "/v1/services/svc?tag=a", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["instances"][0]["instance"], "i-1");
    let (status, body) = call(&app, "DELETE", "/v1/services/svc/instances/i-1", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(registry.is_empty());
}

#[tokio::test]
async fn unfiltered_lookups_are_served_from_a_cache_that_follows_every_change() {
    let (app, _registry) = app();
    let put = |addr: &str| Some(json!({"address": addr}).to_string());
    call(&app, "PUT", "/v1/services/svc/instances/i-1", put("h:1")).await;
    let (_, first) = call(&app, "GET", "/v1/services/svc", None).await;
    let (_, again) = call(&app, "GET", "/v1/services/svc", None).await;
    assert_eq!(first, again);
    // A renewal changes lease_expires_at without changing the index: the cache must follow.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    call(
        &app,
        "POST",
        "/v1/services/svc/instances/i-1/heartbeat",
        None,
    )
    .await;
    let (_, renewed) = call(&app, "GET", "/v1/services/svc", None).await;
    assert_eq!(renewed["index"], first["index"]);
    assert_ne!(
        renewed["instances"][0]["lease_expires_at"],
        first["instances"][0]["lease_expires_at"]
    );
    call(&app, "PUT", "/v1/services/svc/instances/i-1", put("h:2")).await;
    let (_, updated) = call(&app, "GET", "/v1/services/svc", None).await;
    assert_eq!(updated["instances"][0]["address"], "h:2");
    // Removing everything and re-creating the service never serves an old rendering.
    call(&app, "DELETE", "/v1/services/svc/instances/i-1", None).await;
    let (_, empty) = call(&app, "GET", "/v1/services/svc", None).await;
    assert_eq!(empty["instances"], json!([]));
}

#[tokio::test]
async fn lookups_stay_exact_when_the_cache_budget_is_too_small_to_cache() {
    for budget in [0, 400] {
        let (app, _) = app_with(Config {
            lookup_cache_bytes: budget,
            ..Config::for_test()
        });
        for i in 0..5 {
            let body = json!({"address": format!("h:{}", i + 1)}).to_string();
            call(
                &app,
                "PUT",
                &format!("/v1/services/svc/instances/i-{i}"),
                Some(body),
            )
            .await;
            let (_, view) = call(&app, "GET", "/v1/services/svc", None).await;
            assert_eq!(
                view["instances"].as_array().unwrap().len(),
                i + 1,
                "budget {budget}"
            );
        }
        call(
            &app,
            "PUT",
            "/v1/services/svc/instances/i-0",
            Some(json!({"address": "h:99"}).to_string()),
        )
        .await;
        let (_, view) = call(&app, "GET", "/v1/services/svc", None).await;
        assert_eq!(view["instances"][0]["address"], "h:99");
    }
}

#[tokio::test]
async fn every_bad_input_is_rejected_through_the_router_without_changes() {
    let (app, registry) = app();
    call(
        &app,
        "PUT",
        "/v1/services/orders/instances/orders-1",
        Some(json!({"address": "h:1"}).to_string()),
    )
    .await;
    let before = snapshot(&registry);
    for case in bad_cases() {
        let (status, body) = call(&app, case.method, &case.path, case.body).await;
        assert_eq!(status.as_u16(), case.status, "{}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert_eq!(snapshot(&registry), before, "{}", case.name);
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_error_shape_and_record() {
    let (app, _) = app();
    let (status, doc) = call(&app, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["ErrorBody"]["properties"]["error"].is_object());
    assert!(
        schemas["RegisterBody"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("address"))
    );
    let put = &doc["paths"]["/v1/services/{service}/instances/{instance}"]["put"]["responses"];
    for status in ["200", "400", "413", "507"] {
        assert!(put[status].is_object(), "PUT lacks {status}");
    }
}

/// The API contract other components rely on: any change to the generated document must be
/// deliberate. After reviewing a change, refresh with
/// `UPDATE_SNAPSHOTS=1 cargo test -p directory --test router`, then run the test again without
/// it and commit the file. A run with `UPDATE_SNAPSHOTS` set never passes (it rewrites the
/// file and then fails), and under CI (`CI` set) it refuses to write at all, so CI cannot go
/// green by refreshing the snapshot it checks.
#[tokio::test]
async fn the_openapi_document_matches_its_committed_snapshot() {
    let (app, _) = app();
    let (_, doc) = call(&app, "GET", "/openapi.json", None).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
    let rendered = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "UPDATE_SNAPSHOTS is refused under CI: refresh the snapshot locally and commit it"
        );
        std::fs::write(path, &rendered).unwrap();
        panic!("rewrote {path}; review the diff, then rerun without UPDATE_SNAPSHOTS");
    }
    let committed = std::fs::read_to_string(path)
        .expect("snapshot present (create it with UPDATE_SNAPSHOTS=1)");
    assert!(
        committed == rendered,
        "the OpenAPI document changed; if intended, run `UPDATE_SNAPSHOTS=1 cargo test -p directory --test router` and commit tests/snapshots/openapi.json"
    );
}

#[tokio::test]
async fn every_route_rejects_unknown_and_empty_query_parameters_alike() {
    let (app, registry) = app();
    let instance = "/v1/services/s/instances/i";
    let body = Some(json!({"address": "h:1"}).to_string());
    call(&app, "PUT", instance, body.clone()).await;
    let before = snapshot(&registry);
    let routes = [
        ("GET", "/v1/services".to_owned(), None),
        ("GET", "/v1/services/s".to_owned(), None),
        ("GET", "/v1/watch".to_owned(), None),
        ("GET", instance.to_owned(), None),
        ("PUT", instance.to_owned(), body),
        ("DELETE", instance.to_owned(), None),
        ("POST", format!("{instance}/heartbeat"), None),
        ("GET", "/v1/cluster/members".to_owned(), None),
        ("GET", "/v1/health".to_owned(), None),
        ("GET", "/metrics".to_owned(), None),
        ("GET", "/openapi.json".to_owned(), None),
    ];
    for (method, path, body) in routes {
        for query in ["bogus=1", "index="] {
            let uri = format!("{path}?{query}");
            let (status, answer) = call(&app, method, &uri, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_query", "{method} {uri}");
        }
    }
    assert_eq!(snapshot(&registry), before, "nothing changed");
}
