//! Operational endpoints: health and Prometheus metrics (the OpenAPI document is served by `openapi`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use directory_api::{ErrorBody, Health, RegistryHealth};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::query::NoQuery;
use crate::acl::Access;

/// How long after refusing a replicated entry the node reports itself `degraded`.
pub const DEGRADED_AFTER_REFUSAL: Duration = Duration::from_secs(60);

/// Liveness: answers while the node runs; `degraded` while it refuses replicated entries.
#[utoipa::path(
    get,
    path = "/v1/health",
    responses(
        (status = 200, description = "the node answers", body = Health),
        (status = 400, description = "invalid_query: the route takes no query parameter", body = ErrorBody),
    ),
    tag = "ops"
)]
pub async fn health(State(state): State<AppState>, _: NoQuery) -> Json<Health> {
    let registry = state.registry();
    let refusals = registry.refusals();
    let degraded = refusals
        .last
        .is_some_and(|at| Instant::now().saturating_duration_since(at) < DEGRADED_AFTER_REFUSAL);
    let usage = registry.usage();
    let config = registry.config();
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Json(Health {
        status: if degraded { "degraded" } else { "ok" }.into(),
        node: config.node.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        registry: Some(RegistryHealth {
            instances: wide(usage.instances),
            max_instances: wide(config.max_instances),
            bytes: wide(usage.bytes),
            max_bytes: wide(config.max_registry_bytes),
            refused_replicated_entries: refusals.total,
        }),
    })
}

/// Prometheus text exposition of the node's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 400, description = "invalid_query: the route takes no query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not use operator endpoints (needs the operator rule)", body = ErrorBody),
    ),
    tag = "ops"
)]
pub async fn metrics(
    State(state): State<AppState>,
    access: Access,
    _: NoQuery,
) -> Result<impl IntoResponse, ApiError> {
    access.operator()?;
    #[allow(clippy::cast_precision_loss)] // instance counts are far below 2^52
    metrics::gauge!("directory_instances").set(state.registry().len() as f64);
    crate::metrics::collect_process_metrics();
    let text = state.render_metrics();
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
