//! `/v1/services/{service}/instances/{instance}`: register, heartbeat, deregister, read.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use directory_api::{ErrorBody, RegisterBody};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::path::InstancePath;
use super::query::{NoQuery, StaleQuery};
use super::staleness;
use crate::acl::Access;
use crate::registry::Record;

/// Register or replace an instance.
#[utoipa::path(
    put,
    path = "/v1/services/{service}/instances/{instance}",
    params(("service" = String, Path, description = "service name"), ("instance" = String, Path, description = "instance id")),
    request_body = RegisterBody,
    responses(
        (status = 200, description = "the stored record", body = Record),
        (status = 400, description = "invalid name, body, address, ttl, tags, meta, fingerprint or subscriptions", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service, or not subscribe to one of the topic patterns", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 507, description = "capacity_full: the node holds its maximum of instances; registry_bytes_full: its byte budget (--max-registry-bytes) has no room for this entry", body = ErrorBody),
        (status = 503, description = "internal: with --data-dir, the change is applied but could not be written to disk; retry", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn register(
    State(state): State<AppState>,
    access: Access,
    InstancePath { service, instance }: InstancePath,
    _: NoQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Arc<Record>>, ApiError> {
    access.write(service.as_str())?;
    let body: RegisterBody = serde_json::from_slice(&body?).map_err(ApiError::invalid_json)?;
    let registration = body.into_registration()?;
    for sub in registration.subscriptions.iter() {
        access.subscribe(sub.pattern.as_str())?;
    }
    let record = state
        .registry()
        .register(&service, &instance, registration, Instant::now())?;
    state.registry().flushed().await?;
    Ok(Json(record))
}

/// Renew an instance's lease.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/instances/{instance}/heartbeat",
    params(("service" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 200, description = "the renewed record", body = Record),
        (status = 400, description = "invalid service name, instance id or query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service", body = ErrorBody),
        (status = 404, description = "instance_not_found: unknown or already expired; register again", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    access: Access,
    InstancePath { service, instance }: InstancePath,
    _: NoQuery,
) -> Result<Json<Arc<Record>>, ApiError> {
    access.write(service.as_str())?;
    let record = state
        .registry()
        .heartbeat(&service, &instance, Instant::now())?;
    Ok(Json(record))
}

/// Deregister an instance (idempotent).
#[utoipa::path(
    delete,
    path = "/v1/services/{service}/instances/{instance}",
    params(("service" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 204, description = "gone (whether or not it existed)"),
        (status = 400, description = "invalid name, or a query parameter (the route takes none)", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service", body = ErrorBody),
        (status = 503, description = "internal: with --data-dir, the removal is applied but could not be written to disk; retry", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn deregister(
    State(state): State<AppState>,
    access: Access,
    InstancePath { service, instance }: InstancePath,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    access.write(service.as_str())?;
    state
        .registry()
        .deregister(&service, &instance, Instant::now());
    state.registry().flushed().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read one instance.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/instances/{instance}",
    params(("service" = String, Path), ("instance" = String, Path),
        ("max_stale" = Option<String>, Query, description = "refuse with 503 too_stale when this node last heard from its cluster longer ago (humantime, e.g. 2s)")),
    responses(
        (status = 200, description = "the record (staleness in the X-Directory-Last-Contact and X-Directory-Isolated headers)", body = Record),
        (status = 503, description = "too_stale: the node last heard from its cluster longer ago than max_stale", body = ErrorBody),
        (status = 400, description = "invalid service name, instance id or query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service", body = ErrorBody),
        (status = 404, description = "instance_not_found", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn get_instance(
    State(state): State<AppState>,
    access: Access,
    InstancePath { service, instance }: InstancePath,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.read(service.as_str())?;
    let query = StaleQuery::parse(raw.as_deref())?;
    let staleness = staleness::within(&state, query.max_stale)?;
    metrics::counter!("directory_lookups_total").increment(1);
    let record = state
        .registry()
        .instance(&service, &instance)
        .ok_or_else(|| ApiError::instance_not_found(service.as_str(), instance.as_str()))?;
    Ok((staleness::headers(&staleness), Json(record)).into_response())
}
