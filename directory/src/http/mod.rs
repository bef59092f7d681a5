//! The HTTP API: router, shared state and middleware. Handlers live in one module per
//! resource; [`ApiError`] is the one error type they return.

mod cluster;
mod error;
mod instances;
mod openapi;
mod ops;
mod query;
mod services;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use instances::RegisterBody;
pub use openapi::ApiDoc;
pub use ops::Health;
pub use query::{LookupQuery, WatchQuery};
pub use services::{INDEX_HEADER, ServiceCount, ServiceResponse, ServicesResponse};
pub use watch::LAGGED_EVENT;

use crate::Config;
use crate::registry::{Registry, ServiceName};
use services::CachedLookup;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    registry: Registry,
    config: Arc<Config>,
    metrics: PrometheusHandle,
    cancel: CancellationToken,
    lookup_cache: Arc<DashMap<ServiceName, CachedLookup>>,
    gossip: Option<Arc<crate::gossip::Gossip>>,
}

impl AppState {
    /// State over `registry`; long requests (blocking queries, watch streams) end when
    /// `cancel` fires.
    pub fn new(
        registry: Registry,
        config: Arc<Config>,
        metrics: PrometheusHandle,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            registry,
            config,
            metrics,
            cancel,
            lookup_cache: Arc::default(),
            gossip: None,
        }
    }

    /// The same state with the node's gossip layer (for `/v1/cluster/members`).
    #[must_use]
    pub fn with_gossip(mut self, gossip: Option<Arc<crate::gossip::Gossip>>) -> Self {
        self.gossip = gossip;
        self
    }
}

/// The API router with its middleware: panic catching, body limit (413 above
/// `config.body_limit`), request metrics and tracing.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    let instance = "/v1/services/{service}/instances/{instance}";
    Router::new()
        .route("/v1/services", get(services::list))
        .route("/v1/services/{service}", get(services::lookup))
        .route(
            instance,
            put(instances::register)
                .get(instances::get_instance)
                .delete(instances::deregister),
        )
        .route(&format!("{instance}/heartbeat"), post(instances::heartbeat))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/cluster/members", get(cluster::members))
        .route("/v1/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), track_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .with_state(state)
}

/// Records request count and latency by route template and status.
async fn track_request(State(_): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| route_label(p.as_str()));
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method)];
    metrics::histogram!("directory_http_request_duration_seconds", &labels).record(start.elapsed());
    metrics::counter!("directory_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// A static label for each route template (labels must not carry user input).
fn route_label(template: &str) -> &'static str {
    match template {
        "/v1/services" => "/v1/services",
        "/v1/services/{service}" => "/v1/services/{service}",
        "/v1/services/{service}/instances/{instance}" => {
            "/v1/services/{service}/instances/{instance}"
        }
        "/v1/services/{service}/instances/{instance}/heartbeat" => {
            "/v1/services/{service}/instances/{instance}/heartbeat"
        }
        "/v1/watch" => "/v1/watch",
        "/v1/health" => "/v1/health",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    }
}
