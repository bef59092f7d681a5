//! Consul writes: `agent/service/register`, `agent/service/deregister/:id` and
//! `agent/check/pass|warn|fail/service::id`. They write the same registry as the native API,
//! under the same ACL rules (write right on the service) and the same audit log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use directory_api::ErrorCode;
use tokio::time::Instant;

use super::local_host;
use super::mapping::{self, with_status};
use super::query::{Accepts, ConsulQuery};
use crate::acl::Access;
use crate::http::{ApiError, AppState};
use crate::registry::{CheckStatus, has_check, set_status};
use crate::registry::{InstanceId, Record};

/// Parameters of the register endpoint: `replace-existing-checks` is accepted and changes
/// nothing (a service has at most its one check, always replaced).
const REGISTER: Accepts = Accepts {
    replace_existing_checks: true,
    ..Accepts::NOTHING
};
/// Parameters of the check endpoints: `note` is accepted and not kept.
const CHECK: Accepts = Accepts {
    note: true,
    ..Accepts::NOTHING
};

/// `PUT /v1/agent/service/register`. An instance id already registered under another
/// service is moved (Consul's ids are unique per agent).
pub async fn register(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    ConsulQuery::parse(raw.as_deref(), REGISTER)?;
    let body = body?;
    let reg = mapping::parse_registration(&body, &local_host(&state).to_string())?;
    access.write(reg.service.as_str())?;
    let elsewhere: Vec<_> = find(&state, &reg.instance)
        .into_iter()
        .filter(|r| r.service != reg.service)
        .collect();
    for record in &elsewhere {
        access.write(record.service.as_str())?;
    }
    let now = Instant::now();
    for record in &elsewhere {
        state
            .registry()
            .deregister(&record.service, &record.instance, now);
    }
    state
        .registry()
        .register(&reg.service, &reg.instance, reg.registration, now)?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/service/deregister/:id`.
pub async fn deregister(
    State(state): State<AppState>,
    access: Access,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    ConsulQuery::parse(raw.as_deref(), Accepts::NOTHING)?;
    let id = instance_id(id)?;
    let records = find(&state, &id);
    if records.is_empty() {
        return Err(not_found(format!("Unknown service ID {:?}", id.as_str())));
    }
    for record in &records {
        access.write(record.service.as_str())?;
    }
    for record in &records {
        state
            .registry()
            .deregister(&record.service, &record.instance, Instant::now());
    }
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/check/{pass|warn|fail}/service:<id>`. Every update renews the lease, as a
/// Consul TTL check's timer restarts on each update; `pass` on a passing check is a plain
/// heartbeat (no change index).
pub async fn check(
    State(state): State<AppState>,
    access: Access,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let Path((op, check)) = path.map_err(invalid_path)?;
    let status = match op.as_str() {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        other => {
            let path = format!("/v1/agent/check/{other}/{check}");
            return Err(super::unsupported_endpoint(&axum::http::Method::PUT, &path));
        }
    };
    ConsulQuery::parse(raw.as_deref(), CHECK)?;
    let records = checked_instances(&state, &check)?;
    for record in &records {
        access.write(record.service.as_str())?;
    }
    for record in &records {
        update(&state, record, status)?;
    }
    Ok(StatusCode::OK)
}

fn update(state: &AppState, record: &Record, status: CheckStatus) -> Result<(), ApiError> {
    let now = Instant::now();
    if status == CheckStatus::Passing && set_status(record) == CheckStatus::Passing {
        state
            .registry()
            .heartbeat(&record.service, &record.instance, now)?;
        return Ok(());
    }
    let registration = with_status(record, status)?;
    state
        .registry()
        .register(&record.service, &record.instance, registration, now)?;
    Ok(())
}

/// The instances with a TTL check whose check id is `check` (`service:<id>`).
fn checked_instances(state: &AppState, check: &str) -> Result<Vec<Arc<Record>>, ApiError> {
    let unknown = || {
        not_found(format!(
            "Unknown check ID {check:?}: checks here are service:<id> of instances registered \
             with a TTL check"
        ))
    };
    let id = check
        .strip_prefix("service:")
        .and_then(|id| InstanceId::new(id).ok())
        .ok_or_else(unknown)?;
    let records: Vec<_> = find(state, &id)
        .into_iter()
        .filter(|r| has_check(r))
        .collect();
    if records.is_empty() {
        return Err(unknown());
    }
    Ok(records)
}

/// Every live instance with id `id`, whatever its service.
fn find(state: &AppState, id: &InstanceId) -> Vec<Arc<Record>> {
    let registry = state.registry();
    let (_, services) = registry.services();
    services
        .iter()
        .filter_map(|s| registry.instance(&s.service, id))
        .collect()
}

fn instance_id(id: Result<Path<String>, PathRejection>) -> Result<InstanceId, ApiError> {
    let Path(id) = id.map_err(invalid_path)?;
    Ok(InstanceId::new(&id)?)
}

fn invalid_path(r: PathRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidPath,
        r.body_text(),
    )
}

fn not_found(message: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::InstanceNotFound, message)
}
