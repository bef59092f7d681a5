//! The real server on an ephemeral port, driven over HTTP with reqwest.

mod common;

use std::time::Duration;

use common::{bad_cases, client, snapshot, spawn_get_json, start, start_with, url, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

async fn put(
    server: &directory::Server,
    service: &str,
    instance: &str,
    body: Value,
) -> reqwest::Response {
    let path = format!("/v1/services/{service}/instances/{instance}");
    client()
        .put(url(server, &path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_json(server: &directory::Server, path: &str) -> (StatusCode, Value) {
    let resp = client().get(url(server, path)).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn registered_instances_can_be_looked_up_listed_and_read() {
    let server = start().await;
    let fp = "ab".repeat(32);
    let body = json!({"address": "127.0.0.1:7000", "tags": ["v2"], "meta": {"zone": "a"}, "ttl": "10s", "fingerprint": fp});
    let resp = put(&server, "orders", "orders-1", body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.unwrap();
    assert_eq!(record["service"], "orders");
    assert_eq!(record["instance"], "orders-1");
    assert_eq!(record["address"], "127.0.0.1:7000");
    assert_eq!(record["tags"], json!(["v2"]));
    assert_eq!(record["meta"], json!({"zone": "a"}));
    assert_eq!(record["ttl"], "10s");
    assert_eq!(record["fingerprint"], fp);
    assert_eq!(record["owner"], "directory-1");
    assert_eq!(record["index"], 1);
    for field in ["registered_at", "lease_expires_at"] {
        let text = record[field].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339_weak(text).is_ok() && text.ends_with('Z'),
            "{field}: {text}"
        );
    }
    // Defaults: no tags, no meta, ttl 30s, no fingerprint.
    let resp = put(
        &server,
        "orders",
        "orders-2",
        json!({"address": "[::1]:7001"}),
    )
    .await;
    let second: Value = resp.json().await.unwrap();
    assert_eq!(
        (second["ttl"].clone(), second["fingerprint"].clone()),
        (json!("30s"), Value::Null)
    );

    let resp = client()
        .get(url(&server, "/v1/services/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-directory-index"], "2");
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["service"], "orders");
    assert_eq!(view["index"], 2);
    assert_eq!(view["instances"][0], record);
    assert_eq!(view["instances"].as_array().unwrap().len(), 2);

    let (status, one) = get_json(&server, "/v1/services/orders/instances/orders-1").await;
    assert_eq!((status, one), (StatusCode::OK, record));
    let (status, missing) = get_json(&server, "/v1/services/orders/instances/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "instance_not_found");

    put(
        &server,
        "billing",
        "b-1",
        json!({"address": "billing.internal:80"}),
    )
    .await;
    let (_, list) = get_json(&server, "/v1/services").await;
    assert_eq!(
        list,
        json!({"index": 3, "services": [{"service": "billing", "instances": 1}, {"service": "orders", "instances": 2}],
               "staleness": {"last_contact_ms": 0, "isolated": false}})
    );
    // An unknown service is an empty list, not an error.
    let resp = client()
        .get(url(&server, "/v1/services/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-directory-index"], "0");
    let empty: Value = resp.json().await.unwrap();
    assert_eq!(
        empty,
        json!({"service": "unknown", "index": 0, "instances": [],
               "staleness": {"last_contact_ms": 0, "isolated": false}})
    );
    server.shutdown().await;
}

/// Waits (up to 10 s) until a blocking query is parked on `service` in the registry.
async fn parked_on(server: &directory::Server, service: &str) {
    let service = service.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.registry().waiters(&service) == 0 {
        assert!(
            Instant::now() < deadline,
            "no blocking query parked on {service}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn heartbeats_renew_leases_and_unknown_instances_get_404() {
    let server = start().await;
    let first: Value = put(
        &server,
        "api",
        "a-1",
        json!({"address": "h:1", "ttl": "2s"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let hb = url(&server, "/v1/services/api/instances/a-1/heartbeat");
    // Keep it alive past its 2 s TTL with heartbeats every 300 ms (a stall of up to 1.7 s
    // between two of them is tolerated).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let resp = client().post(&hb).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let renewed: Value = resp.json().await.unwrap();
        assert_eq!(
            renewed["index"], first["index"],
            "a renewal is not a change"
        );
    }
    assert_eq!(server.registry().len(), 1);
    let resp = client()
        .post(url(&server, "/v1/services/api/instances/zz/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "instance_not_found");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("register")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn instances_expire_after_their_ttl_without_any_lookup() {
    let server = start().await;
    put(
        &server,
        "api",
        "short",
        json!({"address": "h:1", "ttl": "1s"}),
    )
    .await;
    put(
        &server,
        "api",
        "long",
        json!({"address": "h:2", "ttl": "1m"}),
    )
    .await;
    let started = Instant::now();
    // Watch the registry directly, so no HTTP lookup can trigger the expiry.
    let registry = server.registry().clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let r = registry.clone();
            async move { r.len() == 1 }
        })
        .await
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    let (_, view) = get_json(&server, "/v1/services/api").await;
    assert_eq!(view["instances"].as_array().unwrap().len(), 1);
    assert_eq!(view["instances"][0]["instance"], "long");
    let resp = client()
        .post(url(&server, "/v1/services/api/instances/short/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "expired instances must re-register"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn deregistering_is_idempotent() {
    let server = start().await;
    put(&server, "api", "a-1", json!({"address": "h:1"})).await;
    let target = url(&server, "/v1/services/api/instances/a-1");
    for _ in 0..2 {
        let resp = client().delete(&target).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    let resp = client()
        .delete(url(&server, "/v1/services/never/instances/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _) = get_json(&server, "/v1/services/api/instances/a-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = get_json(&server, "/v1/services").await;
    assert_eq!(list["services"], json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn lookups_filter_by_every_tag_and_meta_pair() {
    let server = start().await;
    put(
        &server,
        "s",
        "a",
        json!({"address": "h:1", "tags": ["v2", "eu"], "meta": {"zone": "a", "tier": "gold"}}),
    )
    .await;
    put(
        &server,
        "s",
        "b",
        json!({"address": "h:2", "tags": ["v2"], "meta": {"zone": "b"}}),
    )
    .await;
    put(&server, "s", "c", json!({"address": "h:3"})).await;
    let ids = |view: Value| -> Vec<String> {
        view["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["instance"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases = [
        ("", vec!["a", "b", "c"]),
        ("?tag=v2", vec!["a", "b"]),
        ("?tag=v2&tag=eu", vec!["a"]),
        ("?meta=zone:b", vec!["b"]),
        ("?meta=zone:a&meta=tier:gold&tag=eu", vec!["a"]),
        ("?tag=v2&meta=zone:c", vec![]),
        ("?tag=nope", vec![]),
    ];
    for (query, expected) in cases {
        let (status, view) = get_json(&server, &format!("/v1/services/s{query}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(view), expected, "{query}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn blocking_queries_wake_on_change() {
    let server = start().await;
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    let blocking = {
        let target = url(&server, "/v1/services/s?index=1&wait=30s");
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = client().get(target).send().await.unwrap();
            let index = resp.headers()["x-directory-index"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = resp.json().await.unwrap();
            (started.elapsed(), index, body)
        })
    };
    parked_on(&server, "s").await;
    assert!(!blocking.is_finished(), "must hold while nothing changes");
    // A renewal is not a change and must not wake it.
    client()
        .post(url(&server, "/v1/services/s/instances/a/heartbeat"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !blocking.is_finished(),
        "heartbeats must not wake blocking queries"
    );
    put(&server, "s", "b", json!({"address": "h:2"})).await;
    let (elapsed, index, body) = blocking.await.unwrap();
    assert!(elapsed < Duration::from_secs(10));
    assert_eq!(index, "2");
    assert_eq!(body["instances"].as_array().unwrap().len(), 2);
    // Blocking on a service that does not exist yet wakes when it appears: the query is
    // known to be parked before the registration, and must answer long before its 30 s wait.
    let waiting = {
        let target = url(&server, "/v1/services/later?index=0&wait=30s");
        spawn_get_json(target)
    };
    parked_on(&server, "later").await;
    let registered = Instant::now();
    put(&server, "later", "x", json!({"address": "h:3"})).await;
    let appeared = waiting.await.unwrap();
    assert!(
        registered.elapsed() < Duration::from_secs(10),
        "woken by the timeout, not by the registration"
    );
    assert_eq!(appeared["instances"][0]["instance"], "x");
    server.shutdown().await;
}

#[tokio::test]
async fn blocking_queries_time_out_without_change_and_waits_are_capped() {
    let server = start_with(|c| c.max_wait = Duration::from_millis(1500)).await;
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    let started = Instant::now();
    let resp = client()
        .get(url(&server, "/v1/services/s?index=1&wait=700ms"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-directory-index"], "1");
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A 10-minute wait is cut to max_wait.
    let started = Instant::now();
    let resp = client()
        .get(url(&server, "/v1/services/s?index=1&wait=10m"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    server.shutdown().await;
    // An index already behind returns at once: on a node whose cap is a minute, so that
    // "at once" and "after the cap" stay far apart even on a loaded machine.
    let server = start_with(|c| c.max_wait = Duration::from_secs(60)).await;
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    let started = Instant::now();
    let resp = client()
        .get(url(&server, "/v1/services/s?index=0&wait=10m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-directory-index"], "1");
    assert!(started.elapsed() < Duration::from_secs(20));
    server.shutdown().await;
}

/// Reads SSE frames until `count` events (not comments) arrived or 10 s passed.
async fn read_events(resp: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("events in time")
            .unwrap();
        let Some(chunk) = chunk else { break };
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let name = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(name), Some(data)) = (name, data) {
                let data: Value = serde_json::from_str(data).unwrap();
                // The README's `id:` line: the event's index, for `Last-Event-ID` resumption.
                let id = frame.lines().find_map(|l| l.strip_prefix("id: "));
                assert_eq!(
                    id.and_then(|i| i.parse::<u64>().ok()),
                    data["index"].as_u64(),
                    "SSE id line of {frame:?}"
                );
                events.push((name, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn watch_streams_registration_update_expiry_and_removal_events() {
    let server = start().await;
    let mut all = client()
        .get(url(&server, "/v1/watch"))
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::OK);
    assert!(
        all.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut only_s = client()
        .get(url(&server, "/v1/watch?service=s"))
        .send()
        .await
        .unwrap();
    put(&server, "other", "o", json!({"address": "h:9"})).await;
    put(&server, "s", "a", json!({"address": "h:1", "ttl": "1s"})).await;
    put(&server, "s", "a", json!({"address": "h:2", "ttl": "1s"})).await;
    put(&server, "s", "b", json!({"address": "h:3"})).await;
    client()
        .delete(url(&server, "/v1/services/s/instances/b"))
        .send()
        .await
        .unwrap();
    // `a` expires after its 1 s lease.
    let events = read_events(&mut only_s, 5).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|(name, data)| (name.clone(), data["instance"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("registered", "a"),
        ("updated", "a"),
        ("registered", "b"),
        ("deregistered", "b"),
        ("expired", "a"),
    ];
    assert_eq!(summary, expected.map(|(n, i)| (n.to_owned(), i.to_owned())));
    let (name, first) = &events[0];
    assert_eq!(first["type"], name.as_str());
    assert_eq!(first["service"], "s");
    assert_eq!(first["record"]["address"], "h:1");
    assert!(first["index"].as_u64().unwrap() > 0);
    assert_eq!(events[3].1["record"], Value::Null);
    let unfiltered = read_events(&mut all, 1).await;
    assert_eq!(unfiltered[0].1["service"], "other");
    server.shutdown().await;
}

#[tokio::test]
async fn every_bad_input_is_rejected_with_a_clear_error_and_changes_nothing() {
    let server = start().await;
    put(&server, "orders", "orders-1", json!({"address": "h:1"})).await;
    let before = snapshot(server.registry());
    let http = client();
    for case in bad_cases() {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = http.request(method, url(&server, &case.path));
        if let Some(body) = case.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), case.status, "{}", case.name);
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: JSON error body: {e}", case.name));
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{}",
            case.name
        );
        assert_eq!(
            snapshot(server.registry()),
            before,
            "{} changed the store",
            case.name
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_node_answers_507_and_changes_nothing() {
    let server = start_with(|c| c.registry.max_instances = 2).await;
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    put(&server, "s", "b", json!({"address": "h:2"})).await;
    let before = snapshot(server.registry());
    let resp = put(&server, "t", "c", json!({"address": "h:3"})).await;
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "capacity_full");
    assert!(body["error"]["message"].as_str().unwrap().contains('2'));
    assert_eq!(snapshot(server.registry()), before);
    let (_, list) = get_json(&server, "/v1/services").await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
    // Replacing an existing instance still works when full.
    assert_eq!(
        put(&server, "s", "a", json!({"address": "h:9"}))
            .await
            .status(),
        StatusCode::OK
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_past_its_byte_budget_answers_507_and_health_shows_refused_replicas() {
    let server = start_with(|c| c.registry.max_registry_bytes = 4_096).await;
    let meta = |n: usize| -> Value {
        (0..n)
            .map(|i| (format!("k{i}"), json!("v".repeat(1_000))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let ok = put(
        &server,
        "s",
        "a",
        json!({"address": "h:1", "meta": meta(2)}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let before = snapshot(server.registry());
    let resp = put(
        &server,
        "s",
        "b",
        json!({"address": "h:2", "meta": meta(2)}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "registry_bytes_full");
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
    assert_eq!(snapshot(server.registry()), before);

    let (_, health) = get_json(&server, "/v1/health").await;
    assert_eq!(health["status"], "ok");
    let held = health["registry"]["bytes"].as_u64().unwrap();
    assert!(held > 2_000 && held <= 4_096, "{health}");
    assert_eq!(health["registry"]["max_bytes"], 4_096);
    assert_eq!(health["registry"]["instances"], 1);

    // An entry from another node that does not fit: refused, counted, and health degraded.
    let remote = common::remote_entry("t", "far", 3);
    let outcome = server.registry().merge_remote(remote, Instant::now());
    assert_eq!(outcome, directory::registry::MergeOutcome::Refused);
    assert_eq!(snapshot(server.registry()), before);
    let (_, health) = get_json(&server, "/v1/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["registry"]["refused_replicated_entries"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let server = start_with(|c| c.registry.node = "node-x".parse().unwrap()).await;
    let (status, health) = get_json(&server, "/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&health["status"], &health["node"], &health["version"]),
        (
            &json!("ok"),
            &json!("node-x"),
            &json!(env!("CARGO_PKG_VERSION"))
        )
    );
    assert_eq!(health["registry"]["refused_replicated_entries"], 0);

    put(&server, "m", "i", json!({"address": "h:1", "ttl": "1s"})).await;
    get_json(&server, "/v1/services/m").await;
    let registry = server.registry().clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let r = registry.clone();
            async move { r.is_empty() }
        })
        .await
    );
    let resp = client().get(url(&server, "/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for metric in [
        "directory_registrations_total",
        "directory_lookups_total",
        "directory_expirations_total",
        "directory_http_request_duration_seconds_bucket",
        "directory_http_requests_total",
        "directory_instances",
    ] {
        assert!(text.contains(metric), "missing {metric} in\n{text}");
    }

    let (status, doc) = get_json(&server, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/services",
        "/v1/services/{service}",
        "/v1/services/{service}/instances/{instance}",
        "/v1/services/{service}/instances/{instance}/heartbeat",
        "/v1/watch",
        "/v1/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    let record = &doc["components"]["schemas"]["Record"]["properties"];
    for field in [
        "service",
        "instance",
        "address",
        "tags",
        "meta",
        "ttl",
        "fingerprint",
        "owner",
        "index",
        "registered_at",
        "lease_expires_at",
    ] {
        assert!(record[field].is_object(), "Record schema lacks {field}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let server = start().await;
    let resp = client()
        .get(url(&server, "/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let resp = client()
        .post(url(&server, "/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_watch_streams_and_blocking_queries_promptly() {
    let server = start().await;
    let mut watch = client()
        .get(url(&server, "/v1/watch"))
        .send()
        .await
        .unwrap();
    let blocking = tokio::spawn(
        client()
            .get(url(&server, "/v1/services/s?index=5&wait=5m"))
            .send(),
    );
    parked_on(&server, "s").await;
    let addr = server.http_addr();
    let started = Instant::now();
    server.shutdown().await;
    // Far below the 5-minute wait it would otherwise hold, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let resp = blocking.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The stream ends (possibly after keep-alive comments).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = watch.chunk().await {}
    })
    .await;
    assert!(ended.is_ok());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );
}

/// The family a sample line belongs to (`name{labels} value` → `name`, histogram suffixes
/// removed when the base name has a TYPE line).
fn family<'a>(sample: &'a str, text: &str) -> &'a str {
    let name = sample.split(['{', ' ']).next().unwrap_or_default();
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && text.contains(&format!("# TYPE {base} "))
        {
            return base;
        }
    }
    name
}

#[tokio::test]
async fn every_metric_series_has_help_and_type_and_process_metrics_and_build_info_exist() {
    let server = start().await;
    put(&server, "m", "i", json!({"address": "h:1"})).await;
    get_json(&server, "/v1/services/m").await;
    let resp = client().get(url(&server, "/metrics")).send().await.unwrap();
    let text = resp.text().await.unwrap();
    for sample in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let family = family(sample, &text);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {sample}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {sample}"
        );
    }
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| {
                panic!("no {name} in\n{text}");
            });
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("process_resident_memory_bytes ") > 1e6);
    assert!(value("process_open_fds ") >= 3.0);
    assert!(value("process_cpu_seconds_total ") >= 0.0);
    let build = format!(
        "directory_build_info{{version=\"{}\"}} ",
        env!("CARGO_PKG_VERSION")
    );
    assert!((value(&build) - 1.0).abs() < f64::EPSILON, "{text}");
    server.shutdown().await;
}

/// Opens `GET /v1/watch{query}`, with `Last-Event-ID` when given.
async fn watch_from(
    server: &directory::Server,
    query: &str,
    last_id: Option<&str>,
) -> reqwest::Response {
    let mut request = client().get(url(server, &format!("/v1/watch{query}")));
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

fn kinds_and_instances(events: &[(String, Value)]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|(name, data)| {
            (
                name.clone(),
                data["instance"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_watch_resumed_with_last_event_id_sees_exactly_the_changes_it_missed() {
    let server = start().await;
    let mut first = watch_from(&server, "?service=s", None).await;
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    put(&server, "s", "b", json!({"address": "h:2"})).await;
    let seen = read_events(&mut first, 2).await;
    let last_id = seen[1].1["index"].to_string();
    drop(first);

    put(&server, "s", "c", json!({"address": "h:3"})).await;
    put(&server, "other", "x", json!({"address": "h:4"})).await;
    client()
        .delete(url(&server, "/v1/services/s/instances/a"))
        .send()
        .await
        .unwrap();
    // Last-Event-ID takes precedence over ?index= (what a reconnecting EventSource sends).
    let mut resumed = watch_from(&server, "?service=s&index=0", Some(&last_id)).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    put(&server, "s", "d", json!({"address": "h:5"})).await;
    let events = read_events(&mut resumed, 3).await;
    let expected = [
        ("registered", "c"),
        ("deregistered", "a"),
        ("registered", "d"),
    ];
    assert_eq!(
        kinds_and_instances(&events),
        expected.map(|(n, i)| (n.to_owned(), i.to_owned()))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_watch_resumed_from_an_index_the_history_lost_starts_with_a_reset() {
    let server = start_with(|c| {
        c.registry.event_buffer = std::num::NonZeroUsize::new(2).unwrap();
    })
    .await;
    for i in 0..4 {
        put(&server, "s", &format!("i{i}"), json!({"address": "h:1"})).await;
    }
    let mut stale = watch_from(&server, "?index=1", None).await;
    let mut ahead = watch_from(&server, "", Some("99")).await;
    put(&server, "s", "late", json!({"address": "h:1"})).await;
    for watch in [&mut stale, &mut ahead] {
        let events = read_events(watch, 2).await;
        assert_eq!(events[0].0, "reset", "{events:?}");
        assert_eq!(events[0].1["index"], 4);
        assert_eq!(
            kinds_and_instances(&events[1..]),
            [("registered".to_owned(), "late".to_owned())]
        );
    }
    let resp = watch_from(&server, "", Some("not-a-number")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_header");
    server.shutdown().await;
}

#[tokio::test]
async fn blocking_queries_on_the_catalog_wake_on_any_change() {
    let server = start().await;
    let resp = client()
        .get(url(&server, "/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-directory-index"], "0");
    let mut waiting = spawn_get_json(url(&server, "/v1/services?index=0&wait=20s"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "no change yet: the query blocks"
    );
    put(&server, "s", "a", json!({"address": "h:1"})).await;
    let list = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the registration")
        .unwrap();
    assert_eq!(list["index"], 1);
    assert_eq!(list["services"][0]["service"], "s");

    let started = Instant::now();
    let (status, same) = get_json(&server, "/v1/services?index=1&wait=200ms").await;
    assert_eq!((status, &same["index"]), (StatusCode::OK, &json!(1)));
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
    server.shutdown().await;
}
