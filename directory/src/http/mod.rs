//! The HTTP API: router, shared state and middleware. Handlers live in one module per
//! resource; [`ApiError`] is the one error type they return. The request and response
//! types are the API crate's (`directory_api`), shared with every client.
//!
//! Layout: `instances`, `services`, `watch`, `cluster`, `ops` — handlers by resource;
//! `path` and `query` — extractors that yield validated values; `lookup_cache` — the
//! rendered-lookup cache; `error` — [`ApiError`]; `openapi` — the generated document, to
//! which `openapi_constraints` adds the server's constraints and the middleware's answers
//! and `openapi_examples` the examples; `request_metrics` — per-route counters;
//! `prometheus_sd` — Prometheus HTTP service discovery; `ui` — the status page at `/ui`;
//! `consul` — the Consul-compatible subset (`docs/consul-compat.md`); `staleness` —
//! staleness headers, JSON and `?max_stale=`.

mod auth;
mod cluster;
pub mod consul;
mod error;
mod instances;
mod limits;
mod lookup_cache;
mod openapi;
mod openapi_constraints;
mod openapi_examples;
mod ops;
mod path;
mod prometheus_sd;
mod query;
mod request_metrics;
mod services;
mod staleness;
mod topics;
mod ui;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::TOKEN_HEADER;
pub use directory_api::{
    ErrorBody, ErrorDetail, Health, LAGGED_EVENT, RegisterBody, ServiceCount, ServiceResponse,
    ServicesResponse,
};
pub use error::ApiError;
pub use lookup_cache::LookupCache;
pub use openapi::ApiDoc;
pub use path::{InstancePath, ServicePath};
pub use query::{
    Blocking, LookupQuery, MAX_INDEX, NoQuery, ServicesQuery, StaleQuery, WAIT_PATTERN, WatchQuery,
};
pub use services::INDEX_HEADER;

use crate::Config;
use crate::acl::Acl;
use crate::gossip::{ClusterContact, Gossip};
use crate::registry::Registry;
use directory_api::Staleness;
use request_metrics::{MethodLabel, RequestMetrics, Route, StatusLabel};

/// What every handler can reach. Cheap to clone (one `Arc`: axum clones the state for
/// every request).
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

struct StateInner {
    registry: Registry,
    config: Arc<Config>,
    metrics: PrometheusHandle,
    cancel: CancellationToken,
    lookup_cache: LookupCache,
    request_metrics: RequestMetrics,
    gossip: Option<Arc<Gossip>>,
    /// The rules enforced; `None` without an ACL file (everything allowed).
    acl: Option<Arc<Acl>>,
    /// When the node last heard from its cluster (standalone without gossip).
    contact: Arc<ClusterContact>,
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
        Self(Arc::new(StateInner {
            lookup_cache: LookupCache::new(config.lookup_cache_bytes),
            registry,
            config,
            metrics,
            cancel,
            request_metrics: RequestMetrics::default(),
            gossip: None,
            acl: None,
            contact: Arc::new(ClusterContact::standalone()),
        }))
    }

    /// The same state with the node's gossip layer (for `/v1/cluster/members`).
    #[must_use]
    pub fn with_gossip(self, gossip: Option<Arc<Gossip>>) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                if let Some(g) = &gossip {
                    inner.contact = g.contact().clone();
                }
                inner.gossip = gossip;
                Self(Arc::new(inner))
            }
            // Already shared: build a twin (its lookup cache starts empty, which is harmless).
            Err(shared) => Self(Arc::new(StateInner {
                registry: shared.registry.clone(),
                config: shared.config.clone(),
                metrics: shared.metrics.clone(),
                cancel: shared.cancel.clone(),
                lookup_cache: LookupCache::new(shared.config.lookup_cache_bytes),
                request_metrics: RequestMetrics::default(),
                contact: gossip
                    .as_ref()
                    .map_or_else(|| shared.contact.clone(), |g| g.contact().clone()),
                gossip,
                acl: shared.acl.clone(),
            })),
        }
    }

    /// The same state enforcing `acl` (`None`: no access control).
    #[must_use]
    pub fn with_acl(self, acl: Option<Arc<Acl>>) -> Self {
        let mut inner = self.into_inner();
        inner.acl = acl;
        Self(Arc::new(inner))
    }

    /// The inner state, or a twin of it when shared (its lookup cache starts empty).
    fn into_inner(self) -> StateInner {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| StateInner {
            registry: shared.registry.clone(),
            config: shared.config.clone(),
            metrics: shared.metrics.clone(),
            cancel: shared.cancel.clone(),
            lookup_cache: LookupCache::new(shared.config.lookup_cache_bytes),
            request_metrics: RequestMetrics::default(),
            gossip: shared.gossip.clone(),
            acl: shared.acl.clone(),
            contact: shared.contact.clone(),
        })
    }

    /// The same state reporting staleness from `contact` (tests use it to play a node that
    /// has not heard from its cluster for a while; [`Self::with_gossip`] sets the real one).
    #[must_use]
    pub fn with_contact(self, contact: Arc<ClusterContact>) -> Self {
        let mut inner = self.into_inner();
        inner.contact = contact;
        Self(Arc::new(inner))
    }
}

impl AppState {
    /// The node's registry.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The rendered-lookup cache.
    pub fn lookup_cache(&self) -> &LookupCache {
        &self.0.lookup_cache
    }

    /// The gossip layer, when the node runs in a cluster.
    pub fn gossip(&self) -> Option<&Gossip> {
        self.0.gossip.as_deref()
    }

    /// Fires when the node shuts down: long requests end then.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.cancel
    }

    /// The Prometheus text exposition of the node's metrics.
    pub fn render_metrics(&self) -> String {
        self.0.metrics.render()
    }

    /// The enforced ACL, when the node runs with an ACL file.
    pub fn acl(&self) -> Option<&Acl> {
        self.0.acl.as_deref()
    }

    /// Resolves at the next reload of the ACL file (never without one): long-lived streams
    /// end then, so their clients reconnect under the new rules.
    pub fn acl_reloaded(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let reloaded = self.0.acl.as_ref().map(|acl| acl.reloaded());
        async move {
            match reloaded {
                Some(reloaded) => reloaded.await,
                None => std::future::pending().await,
            }
        }
    }

    /// How fresh this node's view of the cluster is right now.
    pub fn staleness(&self) -> Staleness {
        self.0.contact.staleness(tokio::time::Instant::now())
    }

    fn request_metrics(&self) -> &RequestMetrics {
        &self.0.request_metrics
    }
}

/// The API router with its middleware: panic catching, body limit (413 above
/// `config.body_limit`), request metrics and tracing.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().body_limit;
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
        .route("/v1/topics", get(topics::list))
        .route("/v1/topics/{topic}/subscribers", get(topics::subscribers))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/cluster/members", get(cluster::members))
        .route("/v1/sd/prometheus", get(prometheus_sd::targets))
        .route("/v1/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .merge(consul::router(state.clone()))
        .merge(ui::routes())
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .with_state(state)
}

/// Records request count and latency by route template, method and status, and logs each
/// request at debug level (`DIRECTORY_LOG=directory::http=debug`). This replaces
/// tower-http's `TraceLayer`, whose per-request span cost 5-10% of lookup throughput even
/// with debug logging off; a disabled `debug!` costs one atomic load.
async fn track_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(Route::Other, |p| Route::from_template(p.as_str()));
    let method = MethodLabel::of(request.method());
    let response = next.run(request).await;
    let status = StatusLabel::of(response.status());
    let elapsed = start.elapsed();
    state
        .request_metrics()
        .record(route, method, status, elapsed);
    tracing::debug!(
        ?method,
        ?route,
        status = response.status().as_u16(),
        ?elapsed,
        "request"
    );
    response
}
