//! Operational endpoints: health, Prometheus metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use super::AppState;
use super::openapi::ApiDoc;

/// `GET /v1/health` response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` when the node answers.
    #[schema(example = "ok")]
    pub status: String,
    /// This node's name.
    pub node: String,
    /// Version of the directory software.
    pub version: String,
}

/// Liveness: answers while the node runs.
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)), tag = "ops")]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node: state.0.config.registry.node.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Prometheus text exposition of the node's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
    tag = "ops"
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    #[allow(clippy::cast_precision_loss)] // instance counts are far below 2^52
    metrics::gauge!("directory_instances").set(state.0.registry.len() as f64);
    let text = state.0.metrics.render();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 document")), tag = "ops")]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
