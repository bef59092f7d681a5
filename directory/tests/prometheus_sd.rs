//! `GET /v1/sd/prometheus` through the router (no sockets): the HTTP SD format, filters and
//! ACL read filtering.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use directory::Config;
use directory::acl::{Acl, AclFile};
use directory::http::{AppState, router};
use directory::registry::{
    Address, InstanceId, Meta, Now, Registration, Registry, ServiceName, Tags,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn app(acl: Option<Acl>) -> (Router, Registry) {
    let config = Config::for_test();
    let registry = Registry::new(config.registry.clone());
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(
        registry.clone(),
        Arc::new(config),
        metrics,
        CancellationToken::new(),
    )
    .with_acl(acl.map(Arc::new));
    (router(state), registry)
}

fn register(registry: &Registry, service: &str, instance: &str, address: &str, tags: &[&str]) {
    let mut registration = Registration::new(Address::new(address).unwrap());
    registration.tags = Tags::new(tags.iter().map(|t| t.to_string()).collect()).unwrap();
    registration.meta = Meta::new([("rack.id".to_string(), "r1".to_string())].into()).unwrap();
    registry
        .register(
            &ServiceName::new(service).unwrap(),
            &InstanceId::new(instance).unwrap(),
            registration,
            Now::current(),
        )
        .unwrap();
}

async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn instances(groups: &Value) -> Vec<&str> {
    groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["labels"]["__meta_directory_instance"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_live_instance_is_a_target_group_with_its_labels() {
    let (app, registry) = app(None);
    let (status, body) = get(&app, "/v1/sd/prometheus", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    register(
        &registry,
        "orders",
        "orders-1",
        "10.0.0.1:9100",
        &["v2", "canary"],
    );
    register(&registry, "billing", "billing-1", "[::1]:9200", &[]);
    let (status, body) = get(&app, "/v1/sd/prometheus", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(instances(&body), ["billing-1", "orders-1"]);
    assert_eq!(
        body[1],
        json!({
            "targets": ["10.0.0.1:9100"],
            "labels": {
                "__meta_directory_service": "orders",
                "__meta_directory_instance": "orders-1",
                "__meta_directory_node": Config::for_test().registry.node.as_str(),
                "__meta_directory_tags": ",v2,canary,",
                "__meta_directory_meta_rack_id": "r1",
            }
        })
    );
    assert_eq!(body[0]["targets"], json!(["[::1]:9200"]));
    assert_eq!(body[0]["labels"]["__meta_directory_tags"], "");
}

#[tokio::test]
async fn service_and_tag_parameters_select_the_groups() {
    let (app, registry) = app(None);
    register(&registry, "orders", "orders-1", "10.0.0.1:9100", &["v2"]);
    register(&registry, "orders", "orders-2", "10.0.0.2:9100", &["v1"]);
    register(&registry, "billing", "billing-1", "10.0.0.3:9100", &["v2"]);
    let (_, body) = get(&app, "/v1/sd/prometheus?service=orders", None).await;
    assert_eq!(instances(&body), ["orders-1", "orders-2"]);
    let (_, body) = get(&app, "/v1/sd/prometheus?tag=v2", None).await;
    assert_eq!(instances(&body), ["billing-1", "orders-1"]);
    let (_, body) = get(&app, "/v1/sd/prometheus?service=orders&tag=v2", None).await;
    assert_eq!(instances(&body), ["orders-1"]);
    let (_, body) = get(&app, "/v1/sd/prometheus?service=unknown", None).await;
    assert_eq!(body, json!([]));
    for (bad, code) in [
        ("/v1/sd/prometheus?services=orders", "invalid_query"),
        (
            "/v1/sd/prometheus?service=Bad%20Name",
            "invalid_service_name",
        ),
        ("/v1/sd/prometheus?meta=novalue", "invalid_query"),
    ] {
        let (status, body) = get(&app, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], code, "{bad}");
    }
}

#[tokio::test]
async fn groups_follow_the_same_read_rules_as_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let mut file = AclFile {
        anonymous: vec!["read:orders".parse().unwrap()],
        ..AclFile::default()
    };
    let (_, operator) = file.create_token("ops", vec!["operator".parse().unwrap()]);
    file.save(&path).unwrap();
    let (app, registry) = app(Some(Acl::load(&path).unwrap()));
    register(&registry, "orders", "orders-1", "10.0.0.1:9100", &[]);
    register(&registry, "billing", "billing-1", "10.0.0.3:9100", &[]);
    let (status, body) = get(&app, "/v1/sd/prometheus", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(instances(&body), ["orders-1"]);
    let (status, body) = get(&app, "/v1/sd/prometheus?service=billing", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = get(&app, "/v1/sd/prometheus", Some(&operator)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
