//! `/v1/services/{service}/instances/{instance}`: register, heartbeat, deregister, read.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::acl::Access;
use crate::registry::{
    Address, Fingerprint, InstanceId, Meta, Record, Registration, ServiceName, Tags, Ttl,
};

/// Body of a registration. Unknown fields are rejected.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// `host:port` (IPv4, `[IPv6]` or DNS name).
    #[schema(example = "127.0.0.1:7000")]
    pub address: String,
    /// Up to 64 tags of at most 1 KiB each.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Up to 64 pairs; keys `[A-Za-z0-9._-]{1,128}`, values at most 1 KiB.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Lease length, 1s..=1h, humantime format. Default 30s.
    #[serde(default)]
    #[schema(example = "10s")]
    pub ttl: Option<String>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER, 64 hex digits.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl RegisterBody {
    /// Validates every field into a [`Registration`].
    pub fn into_registration(self) -> Result<Registration, ApiError> {
        Ok(Registration {
            address: Address::new(&self.address)?,
            tags: Tags::new(self.tags.unwrap_or_default())?,
            meta: Meta::new(self.meta.unwrap_or_default())?,
            ttl: self
                .ttl
                .as_deref()
                .map(Ttl::parse)
                .transpose()?
                .unwrap_or_default(),
            fingerprint: self
                .fingerprint
                .as_deref()
                .map(Fingerprint::parse)
                .transpose()?,
        })
    }
}

/// Parses the two path segments into validated names.
pub(super) fn key(service: &str, instance: &str) -> Result<(ServiceName, InstanceId), ApiError> {
    Ok((ServiceName::new(service)?, InstanceId::new(instance)?))
}

/// Register or replace an instance.
#[utoipa::path(
    put,
    path = "/v1/services/{service}/instances/{instance}",
    params(("service" = String, Path, description = "service name"), ("instance" = String, Path, description = "instance id")),
    request_body = RegisterBody,
    responses(
        (status = 200, description = "the stored record", body = Record),
        (status = 400, description = "invalid name, body, address, ttl, tags, meta or fingerprint", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 507, description = "capacity_full: the node holds its maximum of instances", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn register(
    State(state): State<AppState>,
    access: Access,
    Path((service, instance)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Arc<Record>>, ApiError> {
    let (service, instance) = key(&service, &instance)?;
    access.write(service.as_str())?;
    let body: RegisterBody = serde_json::from_slice(&body?).map_err(ApiError::invalid_json)?;
    let registration = body.into_registration()?;
    let record = state
        .0
        .registry
        .register(&service, &instance, registration, Instant::now())?;
    Ok(Json(record))
}

/// Renew an instance's lease.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/instances/{instance}/heartbeat",
    params(("service" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 200, description = "the renewed record", body = Record),
        (status = 400, description = "invalid service name or instance id", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service", body = ErrorBody),
        (status = 404, description = "instance_not_found: unknown or already expired; register again", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    access: Access,
    Path((service, instance)): Path<(String, String)>,
) -> Result<Json<Arc<Record>>, ApiError> {
    let (service, instance) = key(&service, &instance)?;
    access.write(service.as_str())?;
    let record = state
        .0
        .registry
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
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not write this service", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn deregister(
    State(state): State<AppState>,
    access: Access,
    Path((service, instance)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (service, instance) = key(&service, &instance)?;
    access.write(service.as_str())?;
    state
        .0
        .registry
        .deregister(&service, &instance, Instant::now());
    Ok(StatusCode::NO_CONTENT)
}

/// Read one instance.
#[utoipa::path(
    get,
    path = "/v1/services/{service}/instances/{instance}",
    params(("service" = String, Path), ("instance" = String, Path)),
    responses(
        (status = 200, description = "the record", body = Record),
        (status = 400, description = "invalid service name or instance id", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service", body = ErrorBody),
        (status = 404, description = "instance_not_found", body = ErrorBody),
    ),
    tag = "instances"
)]
pub async fn get_instance(
    State(state): State<AppState>,
    access: Access,
    Path((service, instance)): Path<(String, String)>,
) -> Result<Json<Arc<Record>>, ApiError> {
    let (service_name, instance_id) = key(&service, &instance)?;
    access.read(service_name.as_str())?;
    metrics::counter!("directory_lookups_total").increment(1);
    state
        .0
        .registry
        .instance(&service_name, &instance_id)
        .map(Json)
        .ok_or_else(|| ApiError::instance_not_found(&service, &instance))
}
