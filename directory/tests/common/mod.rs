//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use directory::registry::{Filter, Record, Registry};
use directory::{Config, Server};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Starts a node on 127.0.0.1:0 with `tweak` applied to the test config.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::for_test();
    tweak(&mut config);
    Server::start(config).await.expect("server starts")
}

/// Starts a node with the test config.
pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// A plain-HTTP client that needs no process-wide TLS provider.
pub fn client() -> reqwest::Client {
    directory::cli::http_client(Duration::from_secs(30)).expect("client builds")
}

/// Base URL of a node.
pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.http_addr())
}

/// Starts `GET url` in a task (typically a blocking query) and yields its JSON body.
pub fn spawn_get_json(url: String) -> tokio::task::JoinHandle<Value> {
    tokio::spawn(async move {
        client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
}

/// Everything clients can observe of a registry's content, to assert "nothing changed":
/// the index, the count, and every service's revision and records.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    index: u64,
    len: usize,
    services: Vec<(u64, Vec<Arc<Record>>)>,
}

/// Takes a [`Snapshot`].
pub fn snapshot(registry: &Registry) -> Snapshot {
    let (index, services) = registry.services();
    let services = services
        .iter()
        .map(|s| {
            let view = registry.lookup(&s.service, &Filter::default());
            (view.revision, view.instances)
        })
        .collect();
    Snapshot {
        index,
        len: registry.len(),
        services,
    }
}

/// Polls `check` every 20 ms until it is true, at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A bad request: method, path, body, expected status, expected code.
pub struct BadCase {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    pub status: u16,
    pub code: &'static str,
}

fn case(name: &'static str, path: &str, body: Value, status: u16, code: &'static str) -> BadCase {
    BadCase {
        name,
        method: "PUT",
        path: path.to_owned(),
        body: Some(body.to_string()),
        status,
        code,
    }
}

/// Every bad-input case of the issue, each of which must leave the store unchanged.
pub fn bad_cases() -> Vec<BadCase> {
    let ok_path = "/v1/services/orders/instances/orders-9";
    let many_tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let many_meta: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let raw = |name, body: &str, code| BadCase {
        name,
        method: "PUT",
        path: ok_path.to_owned(),
        body: Some(body.to_owned()),
        status: 400,
        code,
    };
    vec![
        raw("malformed json", "{\"address\": ", "invalid_json"),
        raw("not an object", "[1,2]", "invalid_json"),
        raw("empty body", "", "invalid_json"),
        case(
            "unknown field",
            ok_path,
            json!({"address": "h:1", "color": "red"}),
            400,
            "invalid_json",
        ),
        case(
            "wrong type",
            ok_path,
            json!({"address": 5}),
            400,
            "invalid_json",
        ),
        case(
            "missing address",
            ok_path,
            json!({"ttl": "10s"}),
            400,
            "invalid_json",
        ),
        case(
            "upper-case service",
            "/v1/services/Orders/instances/o-1",
            json!({"address": "h:1"}),
            400,
            "invalid_service_name",
        ),
        case(
            "service starting with dash",
            "/v1/services/-orders/instances/o-1",
            json!({"address": "h:1"}),
            400,
            "invalid_service_name",
        ),
        case(
            "service too long",
            &format!("/v1/services/{}/instances/o-1", "a".repeat(64)),
            json!({"address": "h:1"}),
            400,
            "invalid_service_name",
        ),
        case(
            "instance with space",
            "/v1/services/orders/instances/o%201",
            json!({"address": "h:1"}),
            400,
            "invalid_instance_id",
        ),
        case(
            "address without port",
            ok_path,
            json!({"address": "10.0.0.5"}),
            400,
            "invalid_address",
        ),
        case(
            "address port zero",
            ok_path,
            json!({"address": "10.0.0.5:0"}),
            400,
            "invalid_address",
        ),
        case(
            "address port too big",
            ok_path,
            json!({"address": "10.0.0.5:70000"}),
            400,
            "invalid_address",
        ),
        case(
            "address bad host",
            ok_path,
            json!({"address": "bad_host!:80"}),
            400,
            "invalid_address",
        ),
        case(
            "address bare ipv6",
            ok_path,
            json!({"address": "::1:80"}),
            400,
            "invalid_address",
        ),
        case(
            "ttl too short",
            ok_path,
            json!({"address": "h:1", "ttl": "500ms"}),
            400,
            "invalid_ttl",
        ),
        case(
            "ttl too long",
            ok_path,
            json!({"address": "h:1", "ttl": "2h"}),
            400,
            "invalid_ttl",
        ),
        case(
            "ttl unparsable",
            ok_path,
            json!({"address": "h:1", "ttl": "soon"}),
            400,
            "invalid_ttl",
        ),
        case(
            "65 tags",
            ok_path,
            json!({"address": "h:1", "tags": many_tags}),
            400,
            "invalid_tags",
        ),
        case(
            "tag over 1 KiB",
            ok_path,
            json!({"address": "h:1", "tags": ["x".repeat(1025)]}),
            400,
            "invalid_tags",
        ),
        case(
            "65 meta keys",
            ok_path,
            json!({"address": "h:1", "meta": many_meta}),
            400,
            "invalid_meta",
        ),
        case(
            "meta value over 1 KiB",
            ok_path,
            json!({"address": "h:1", "meta": {"k": "v".repeat(1025)}}),
            400,
            "invalid_meta",
        ),
        case(
            "bad fingerprint",
            ok_path,
            json!({"address": "h:1", "fingerprint": "abc"}),
            400,
            "invalid_fingerprint",
        ),
        case(
            "body over 64 KiB",
            ok_path,
            json!({"address": "h:1", "tags": ["y".repeat(70 * 1024)]}),
            413,
            "payload_too_large",
        ),
        BadCase {
            name: "heartbeat with bad name",
            method: "POST",
            path: "/v1/services/BAD/instances/o-1/heartbeat".into(),
            body: None,
            status: 400,
            code: "invalid_service_name",
        },
        BadCase {
            name: "delete with bad instance",
            method: "DELETE",
            path: "/v1/services/orders/instances/_x".into(),
            body: None,
            status: 400,
            code: "invalid_instance_id",
        },
        BadCase {
            name: "lookup with unknown query key",
            method: "GET",
            path: "/v1/services/orders?tags=v2".into(),
            body: None,
            status: 400,
            code: "invalid_query",
        },
        BadCase {
            name: "lookup with bad meta filter",
            method: "GET",
            path: "/v1/services/orders?meta=zone".into(),
            body: None,
            status: 400,
            code: "invalid_query",
        },
        BadCase {
            name: "lookup with bad index",
            method: "GET",
            path: "/v1/services/orders?index=abc".into(),
            body: None,
            status: 400,
            code: "invalid_query",
        },
        BadCase {
            name: "watch with bad service",
            method: "GET",
            path: "/v1/watch?service=NO".into(),
            body: None,
            status: 400,
            code: "invalid_service_name",
        },
    ]
}

/// A live entry as another node (`node-far`) would replicate it: `service/instance` with
/// `meta_values` meta values of 1,000 bytes and a 30 s lease.
pub fn remote_entry(
    service: &str,
    instance: &str,
    meta_values: usize,
) -> directory::registry::Entry {
    use directory::registry::{
        Address, Entry, EntryState, LiveState, Meta, NodeName, Tags, Ttl, Version,
    };
    let meta = (0..meta_values)
        .map(|i| (format!("k{i}"), "v".repeat(1_000)))
        .collect();
    Entry {
        service: service.parse().unwrap(),
        instance: instance.parse().unwrap(),
        version: Version {
            hlc: u64::from(u32::MAX),
            node: 7,
        },
        state: EntryState::Live(LiveState {
            address: Address::new("10.0.0.9:9").unwrap(),
            tags: Tags::default(),
            meta: Meta::new(meta).unwrap(),
            ttl: Ttl::from_duration(Duration::from_secs(30)).unwrap(),
            fingerprint: None,
            owner: NodeName::new("node-far").unwrap(),
            registered_at: std::time::SystemTime::now(),
            lease_remaining: Duration::from_secs(30),
            subscriptions: Default::default(),
        }),
    }
}
