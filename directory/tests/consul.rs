//! The Consul-compatible subset through the router (`oneshot`, no sockets): every route, the
//! headers on every answer, blocking queries, the filter subset and its 400s, tokens.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use directory::Config;
use directory::acl::{Acl, AclFile};
use directory::http::{AppState, router};
use directory::registry::{Registry, ServiceName};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn state(config: Config) -> (AppState, Registry) {
    let registry = Registry::new(config.registry.clone());
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(
        registry.clone(),
        Arc::new(config),
        metrics,
        CancellationToken::new(),
    );
    (state, registry)
}

fn app() -> (Router, Registry) {
    let (state, registry) = state(Config::for_test());
    (router(state), registry)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn put(app: &Router, path: &str, body: Value) -> Answer {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    send(app, Request::put(path).body(body).unwrap()).await
}

fn index(a: &Answer) -> u64 {
    a.headers["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn register_web(app: &Router, id: &str, tags: Value, check: Value) {
    let body = json!({
        "Name": "web", "ID": id, "Address": "10.0.0.1", "Port": 8080,
        "Tags": tags, "Meta": {"env": "prod"}, "Check": check
    });
    let a = put(app, "/v1/agent/service/register", body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

fn ids(body: &Value, pointer: &str) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| e.pointer(pointer).unwrap().as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_ttl_check_starts_critical_and_pass_makes_the_instance_healthy() {
    let (app, registry) = app();
    register_web(&app, "web-1", json!(["v1"]), json!({"TTL": "30s"})).await;
    let health = get(&app, "/v1/health/service/web").await;
    assert_eq!(health.status, StatusCode::OK);
    let entry = &health.body[0];
    assert_eq!(entry["Service"]["ID"], "web-1");
    assert_eq!(entry["Service"]["Port"], 8080);
    assert_eq!(entry["Service"]["Address"], "10.0.0.1");
    assert_eq!(entry["Service"]["Meta"], json!({"env": "prod"}));
    assert_eq!(entry["Node"]["Node"], registry.config().node.as_str());
    assert_eq!(entry["Checks"][0]["CheckID"], "service:web-1");
    assert_eq!(entry["Checks"][0]["Status"], "critical");
    let passing = get(&app, "/v1/health/service/web?passing=true").await;
    assert_eq!(passing.body, json!([]));

    let a = put(&app, "/v1/agent/check/pass/service:web-1", Value::Null).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let passing = get(&app, "/v1/health/service/web?passing").await;
    assert_eq!(ids(&passing.body, "/Service/ID"), ["web-1"]);
    assert_eq!(passing.body[0]["Checks"][0]["Status"], "passing");
    assert!(
        index(&passing) > index(&health),
        "pass from critical is a change"
    );

    // pass on a passing check only renews: same index.
    put(&app, "/v1/agent/check/pass/service:web-1", Value::Null).await;
    assert_eq!(
        index(&get(&app, "/v1/health/service/web").await),
        index(&passing)
    );

    for (op, status) in [("warn", "warning"), ("fail", "critical")] {
        let a = put(
            &app,
            &format!("/v1/agent/check/{op}/service:web-1?note=x"),
            Value::Null,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        let h = get(&app, "/v1/health/service/web").await;
        assert_eq!(h.body[0]["Checks"][0]["Status"], status);
        assert_eq!(
            get(&app, "/v1/health/service/web?passing=1").await.body,
            json!([])
        );
    }
}

#[tokio::test]
async fn catalog_endpoints_show_services_instances_and_nodes() {
    let (app, registry) = app();
    register_web(&app, "web-1", json!(["v1", "blue"]), Value::Null).await;
    register_web(&app, "web-2", json!(["v2"]), Value::Null).await;
    let body = json!({"Name": "db", "Port": 5432});
    assert_eq!(
        put(&app, "/v1/agent/service/register", body).await.status,
        StatusCode::OK
    );

    let services = get(&app, "/v1/catalog/services").await;
    assert_eq!(
        services.body,
        json!({"db": [], "web": ["blue", "v1", "v2"]})
    );
    assert_eq!(
        index(&services),
        registry.index() + 1,
        "Consul's index is the directory's + 1"
    );

    let one = get(&app, "/v1/catalog/service/web?tag=v1").await;
    assert_eq!(ids(&one.body, "/ServiceID"), ["web-1"]);
    assert_eq!(one.body[0]["ServicePort"], 8080);
    assert_eq!(one.body[0]["ServiceMeta"], json!({"env": "prod"}));
    assert_eq!(one.body[0]["Datacenter"], "dc1");
    let all = get(
        &app,
        "/v1/catalog/service/web?node-meta=consul-network-segment:",
    )
    .await;
    assert_eq!(ids(&all.body, "/ServiceID"), ["web-1", "web-2"]);
    let none = get(&app, "/v1/catalog/service/web?node-meta=rack:r1").await;
    assert_eq!(none.body, json!([]));
    // A registration without address takes the node's; without a check it passes.
    let db = get(&app, "/v1/health/service/db?passing").await;
    assert_eq!(db.body[0]["Service"]["Address"], "127.0.0.1");
    assert_eq!(db.body[0]["Checks"][0]["Type"], "lease");

    let nodes = get(&app, "/v1/catalog/nodes").await;
    assert_eq!(ids(&nodes.body, "/Node"), [registry.config().node.as_str()]);
    let me = get(&app, "/v1/agent/self").await;
    assert_eq!(me.body["Config"]["Datacenter"], "dc1");
    assert_eq!(
        me.body["Config"]["NodeName"],
        registry.config().node.as_str()
    );
    let leader = get(&app, "/v1/status/leader").await;
    assert!(
        leader.body.as_str().unwrap().starts_with("127.0.0.1:"),
        "{}",
        leader.body
    );
    assert_eq!(
        get(&app, "/v1/status/peers")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn every_consul_answer_carries_the_index_leader_and_contact_headers() {
    let (app, _) = app();
    register_web(&app, "web-1", json!([]), Value::Null).await;
    for (method, path) in [
        ("GET", "/v1/catalog/services"),
        ("GET", "/v1/catalog/service/web"),
        ("GET", "/v1/catalog/nodes"),
        ("GET", "/v1/health/service/web"),
        ("GET", "/v1/health/service/nothing"),
        ("GET", "/v1/agent/self"),
        ("GET", "/v1/status/leader"),
        ("GET", "/v1/kv/some/key"),
        ("GET", "/v1/health/service/web?filter=or"),
        ("PUT", "/v1/agent/service/deregister/unknown"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let a = send(&app, request).await;
        assert!(index(&a) >= 1, "{path}");
        assert_eq!(a.headers["x-consul-knownleader"], "true", "{path}");
        assert_eq!(a.headers["x-consul-lastcontact"], "0", "{path}");
    }
}

#[tokio::test]
async fn a_blocking_health_query_waits_for_a_change_past_its_index() {
    let (app, registry) = app();
    register_web(&app, "web-1", json!([]), json!({"TTL": "30s"})).await;
    let first = get(&app, "/v1/health/service/web?passing").await;
    assert_eq!(first.body, json!([]));
    let at = index(&first);
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            get(
                &app,
                &format!("/v1/health/service/web?passing&index={at}&wait=20s"),
            )
            .await
        })
    };
    let web: ServiceName = "web".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.waiters(&web) == 0 {
        assert!(Instant::now() < deadline, "the query never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!waiting.is_finished());
    put(&app, "/v1/agent/check/pass/service:web-1", Value::Null).await;
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(index(&woken) > at);
    assert_eq!(ids(&woken.body, "/Service/ID"), ["web-1"]);

    // A service nobody registered yet: the first registration wakes its query.
    let unknown = index(&get(&app, "/v1/health/service/api").await);
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            get(
                &app,
                &format!("/v1/health/service/api?index={unknown}&wait=20s"),
            )
            .await
        })
    };
    let api: ServiceName = "api".parse().unwrap();
    while registry.waiters(&api) == 0 {
        assert!(Instant::now() < deadline, "the query never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body = json!({"Name": "api", "Port": 1});
    put(&app, "/v1/agent/service/register", body).await;
    let woken_api = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&woken_api.body, "/Service/ID"), ["api"]);

    // A short wait with nothing changing answers with the same index.
    let now = index(&woken);
    let timed_out = get(
        &app,
        &format!("/v1/health/service/web?index={now}&wait=50ms"),
    )
    .await;
    assert_eq!(index(&timed_out), now);
}

#[tokio::test]
async fn a_consul_blocking_query_outlives_the_request_timeout_like_native_ones() {
    let mut config = Config::for_test();
    config.http_limits.request_timeout = Duration::from_millis(100);
    let (state, _) = state(config);
    let app = router(state);
    let at = index(&get(&app, "/v1/health/service/web").await);
    let started = Instant::now();
    let held = get(
        &app,
        &format!("/v1/health/service/web?index={at}&wait=400ms"),
    )
    .await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[tokio::test]
async fn a_blocking_catalog_query_wakes_on_any_service_change() {
    let (app, registry) = app();
    let at = index(&get(&app, "/v1/catalog/services").await);
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            get(&app, &format!("/v1/catalog/services?index={at}&wait=20s")).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "answered before any change");
    register_web(&app, "web-1", json!(["v1"]), Value::Null).await;
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woken.body, json!({"web": ["v1"]}));
    assert_eq!(index(&woken), registry.index() + 1);
}

#[tokio::test]
async fn deregister_removes_the_instance_and_unknown_ids_are_404() {
    let (app, registry) = app();
    register_web(&app, "web-1", json!([]), json!({"TTL": "30s"})).await;
    let a = put(&app, "/v1/agent/service/deregister/web-1", Value::Null).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(registry.is_empty());
    assert_eq!(get(&app, "/v1/catalog/services").await.body, json!({}));
    let again = put(&app, "/v1/agent/service/deregister/web-1", Value::Null).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let check = put(&app, "/v1/agent/check/pass/service:web-1", Value::Null).await;
    assert_eq!(check.status, StatusCode::NOT_FOUND);
    let custom = put(&app, "/v1/agent/check/pass/mycheck", Value::Null).await;
    assert_eq!(custom.status, StatusCode::NOT_FOUND);
    // An instance without a TTL check has no check to pass.
    register_web(&app, "web-2", json!([]), Value::Null).await;
    let no_check = put(&app, "/v1/agent/check/pass/service:web-2", Value::Null).await;
    assert_eq!(no_check.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unpassed_ttl_check_expires_the_instance_at_its_lease() {
    let (app, registry) = app();
    register_web(&app, "web-1", json!([]), json!({"TTL": "2s"})).await;
    register_web(
        &app,
        "web-2",
        json!([]),
        json!({"TTL": "2s", "DeregisterCriticalServiceAfter": "1s"}),
    )
    .await;
    registry.reap(Instant::now() + Duration::from_secs(3));
    // web-2's deregistration waits at least Consul's minimum of one minute.
    let left = get(&app, "/v1/health/service/web").await;
    assert_eq!(ids(&left.body, "/Service/ID"), ["web-2"]);
    registry.reap(Instant::now() + Duration::from_secs(63));
    assert!(registry.is_empty());
}

#[tokio::test]
async fn registering_an_id_under_another_name_moves_it_like_consul() {
    let (app, registry) = app();
    register_web(&app, "shared-1", json!([]), Value::Null).await;
    let body = json!({"Name": "api", "ID": "shared-1", "Port": 1});
    assert_eq!(
        put(&app, "/v1/agent/service/register", body).await.status,
        StatusCode::OK
    );
    assert_eq!(registry.len(), 1);
    let services = get(&app, "/v1/catalog/services").await;
    assert_eq!(services.body, json!({"api": []}));
}

#[tokio::test]
async fn filters_select_instances_and_unsupported_expressions_are_400() {
    let (app, _) = app();
    register_web(&app, "web-1", json!(["primary"]), Value::Null).await;
    register_web(&app, "web-2", json!(["secondary"]), Value::Null).await;
    let q = |f: &str| form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>();
    let health = get(
        &app,
        &format!(
            "/v1/health/service/web?filter={}",
            q(r#"Service.Tags contains "primary" and Service.Meta.env == "prod""#)
        ),
    )
    .await;
    assert_eq!(ids(&health.body, "/Service/ID"), ["web-1"]);
    let catalog = get(
        &app,
        &format!(
            "/v1/catalog/service/web?filter={}",
            q(r#""secondary" in ServiceTags"#)
        ),
    )
    .await;
    assert_eq!(ids(&catalog.body, "/ServiceID"), ["web-2"]);
    let services = get(
        &app,
        &format!(
            "/v1/catalog/services?filter={}",
            q(r#"ServiceMeta.env != "prod""#)
        ),
    )
    .await;
    assert_eq!(services.body, json!({}));
    for (path, expr) in [
        (
            "/v1/health/service/web",
            r#"Service.Tags contains "a" or Service.ID == "b""#,
        ),
        (
            "/v1/health/service/web",
            r#"Service.Meta.env matches "p.*""#,
        ),
        ("/v1/health/service/web", r#"ServiceTags contains "a""#),
        ("/v1/catalog/service/web", r#"Service.Tags contains "a""#),
    ] {
        let a = get(&app, &format!("{path}?filter={}", q(expr))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{expr}");
        assert_eq!(a.body["error"]["code"], "invalid_query");
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("supported filter subset")
        );
    }
    let a = get(&app, "/v1/catalog/service/web?bogus=1").await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
}

#[tokio::test]
async fn consul_endpoints_outside_the_subset_answer_a_clear_error_not_an_empty_success() {
    let (app, _) = app();
    for (method, path) in [
        ("GET", "/v1/kv/config/db"),
        ("PUT", "/v1/kv/config/db"),
        ("GET", "/v1/agent/members"),
        ("GET", "/v1/agent/services"),
        ("PUT", "/v1/agent/check/update/service:web-1"),
        ("GET", "/v1/health/state/critical"),
        ("GET", "/v1/catalog/datacenters"),
        ("PUT", "/v1/session/create"),
        ("GET", "/v1/acl/tokens"),
        ("GET", "/v1/coordinate/nodes"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let a = send(&app, request).await;
        assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED, "{method} {path}");
        assert_eq!(a.body["error"]["code"], "consul_unsupported", "{path}");
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("GET /v1/health/service/:name"),
            "{message}"
        );
    }
    // The directory's own liveness endpoint is untouched.
    assert_eq!(get(&app, "/v1/health").await.body["status"], "ok");
}

#[tokio::test]
async fn bad_registrations_are_refused_and_change_nothing() {
    let (app, registry) = app();
    for body in [
        json!({"Name": "web", "Port": 80, "Check": {"HTTP": "http://x/", "Interval": "10s"}}),
        json!({"Name": "web"}),
        json!({"Name": "Web", "Port": 80}),
        json!({"Name": "web", "Port": 80, "Check": {"TTL": "2h"}}),
        json!("not an object"),
    ] {
        let a = put(&app, "/v1/agent/service/register", body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(registry.is_empty(), "{body}");
    }
}

fn acl_app() -> (Router, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let mut file = AclFile::default();
    let (_, writer) = file.create_token("web-writer", vec!["write:web".parse().unwrap()]);
    let (_, reader) = file.create_token("db-reader", vec!["read:db".parse().unwrap()]);
    file.save(&path).unwrap();
    let acl = Arc::new(Acl::load(&path).unwrap());
    let (state, _) = state(Config::for_test());
    (router(state.with_acl(Some(acl))), writer, reader)
}

#[tokio::test]
async fn consul_tokens_map_onto_directory_tokens_with_the_same_rules() {
    let (app, writer, reader) = acl_app();
    let body = json!({"Name": "web", "Port": 80}).to_string();
    let register = |token: Option<(&str, &str)>, query: &str| {
        let mut request = Request::put(format!("/v1/agent/service/register{query}"));
        if let Some((name, value)) = token {
            request = request.header(name, value);
        }
        request.body(Body::from(body.clone())).unwrap()
    };
    assert_eq!(
        send(&app, register(None, "")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = send(&app, register(Some(("x-consul-token", "dirtok_nope")), "")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let wrong = send(&app, register(Some(("x-consul-token", &reader)), "")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let ok = send(&app, register(Some(("x-consul-token", &writer)), "")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let by_query = send(&app, register(None, &format!("?token={writer}"))).await;
    assert_eq!(by_query.status, StatusCode::OK);

    // Reads: the reader may not read web; the catalog shows only what a token may read.
    let read = |path: &str, token: &str| {
        Request::get(path)
            .header("x-consul-token", token)
            .body(Body::empty())
            .unwrap()
    };
    let denied = send(&app, read("/v1/health/service/web", &reader)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let seen = send(&app, read("/v1/catalog/services", &reader)).await;
    assert_eq!(seen.body, json!({}));
    let seen = send(&app, read("/v1/catalog/services", &writer)).await;
    assert_eq!(seen.body, json!({"web": []}));
    let self_denied = send(&app, read("/v1/agent/self", &writer)).await;
    assert_eq!(self_denied.status, StatusCode::FORBIDDEN);
    // ?token= is a Consul convention only: the native API does not read it.
    let native = get(&app, &format!("/v1/services/web?token={writer}")).await;
    assert_eq!(native.status, StatusCode::UNAUTHORIZED);
}
