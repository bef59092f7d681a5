//! `/v1/services` and `/v1/services/{service}`: the catalog and lookups (with blocking).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::LookupQuery;
use crate::acl::Access;
use crate::registry::{Filter, Record, ServiceName};

/// Header carrying the service's change index on lookups.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static("x-directory-index");

/// `GET /v1/services` response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServicesResponse {
    /// Global change index.
    pub index: u64,
    /// Services with at least one live instance, sorted by name.
    pub services: Vec<ServiceCount>,
}

/// One service and its live instance count.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceCount {
    /// Service name.
    pub service: String,
    /// Live instances.
    pub instances: usize,
}

/// `GET /v1/services/{service}` response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceResponse {
    /// Service name.
    pub service: String,
    /// The service's change index (0 if it never had an instance here).
    pub index: u64,
    /// Live instances passing the filters, sorted by instance id.
    pub instances: Vec<Record>,
}

/// Borrowing twin of [`ServiceResponse`] for serialization without copies.
#[derive(Serialize)]
struct ServiceResponseRef<'a> {
    service: &'a ServiceName,
    index: u64,
    instances: &'a [Arc<Record>],
}

/// List services with their instance counts.
#[utoipa::path(
    get,
    path = "/v1/services",
    responses(
        (status = 200, description = "the catalog: only the services the token may read", body = ServicesResponse),
        (status = 401, description = "unauthorized: the request may read no service", body = ErrorBody),
        (status = 403, description = "forbidden: the token may read no service", body = ErrorBody),
    ),
    tag = "services"
)]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<ServicesResponse>, ApiError> {
    access.list()?;
    let (index, services) = state.0.registry.services();
    let services = services
        .into_iter()
        .filter(|s| access.can_read(s.service.as_str()))
        .map(|s| ServiceCount {
            service: s.service.to_string(),
            instances: s.instances,
        })
        .collect();
    Ok(Json(ServicesResponse { index, services }))
}

/// Live instances of a service, optionally filtered; a blocking query when `index` is given.
#[utoipa::path(
    get,
    path = "/v1/services/{service}",
    params(
        ("service" = String, Path, description = "service name"),
        ("tag" = Option<Vec<String>>, Query, description = "repeatable; every tag must be present"),
        ("meta" = Option<Vec<String>>, Query, description = "repeatable key:value; every pair must match"),
        ("index" = Option<u64>, Query, description = "blocking query: hold until the service's index exceeds this"),
        ("wait" = Option<String>, Query, description = "blocking query: longest wait (humantime, default 5m, capped at 5m)"),
    ),
    responses(
        (status = 200, description = "live instances; an unknown service is an empty list",
         body = ServiceResponse, headers(("X-Directory-Index" = u64, description = "the service's change index"))),
        (status = 400, description = "invalid service name or query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service", body = ErrorBody),
    ),
    tag = "services"
)]
pub async fn lookup(
    State(state): State<AppState>,
    access: Access,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let service = ServiceName::new(&service)?;
    access.read(service.as_str())?;
    let query = LookupQuery::parse(raw.as_deref())?;
    if let Some(after) = query.index {
        block(&state, &service, after, &query).await;
    }
    metrics::counter!("directory_lookups_total").increment(1);
    let (index, body) = if query.filter.is_empty() {
        cached_body(&state, &service)?
    } else {
        render(&state, &service, &query.filter)?
    };
    Ok(json_with_index(index, body))
}

/// Waits for a change past `after`, the wait (capped) or shutdown, whichever comes first.
async fn block(state: &AppState, service: &ServiceName, after: u64, query: &LookupQuery) {
    let wait = query
        .wait
        .unwrap_or(state.0.config.default_wait)
        .min(state.0.config.max_wait);
    let deadline = Instant::now() + wait;
    tokio::select! {
        _ = state.0.registry.wait_for_change(service, after, deadline) => {}
        () = state.0.cancel.cancelled() => {}
    }
}

/// The rendered unfiltered lookup, from the cache when the service has not changed since.
fn cached_body(state: &AppState, service: &ServiceName) -> Result<(u64, Bytes), ApiError> {
    let (index, revision) = state.0.registry.service_revision(service);
    if revision == 0 {
        forget(state, service);
        return render(state, service, &Filter::default());
    }
    if let Some(hit) = state
        .0
        .lookup_cache
        .get(service)
        .filter(|c| c.revision == revision)
    {
        return Ok((index, hit.body.clone()));
    }
    let view = state.0.registry.lookup(service, &Filter::default());
    let body = serialize(service, view.index, &view.instances)?;
    remember(state, service, view.revision, &body);
    Ok((view.index, body))
}

/// Caches a rendering if it fits the budget (replacing the service's older one).
fn remember(state: &AppState, service: &ServiceName, revision: u64, body: &Bytes) {
    let used = &state.0.lookup_cache_used;
    let old = state
        .0
        .lookup_cache
        .get(service)
        .map_or(0, |c| c.body.len());
    let fits = used.load(Ordering::Relaxed).saturating_sub(old) + body.len()
        <= state.0.config.lookup_cache_bytes;
    if !fits {
        forget(state, service);
        return;
    }
    let entry = CachedLookup {
        revision,
        body: body.clone(),
    };
    used.fetch_add(body.len(), Ordering::Relaxed);
    if let Some(replaced) = state.0.lookup_cache.insert(service.clone(), entry) {
        used.fetch_sub(replaced.body.len(), Ordering::Relaxed);
    }
}

/// Drops a service's cached rendering.
fn forget(state: &AppState, service: &ServiceName) {
    if let Some((_, old)) = state.0.lookup_cache.remove(service) {
        state
            .0
            .lookup_cache_used
            .fetch_sub(old.body.len(), Ordering::Relaxed);
    }
}

fn render(
    state: &AppState,
    service: &ServiceName,
    filter: &Filter,
) -> Result<(u64, Bytes), ApiError> {
    let view = state.0.registry.lookup(service, filter);
    Ok((view.index, serialize(service, view.index, &view.instances)?))
}

fn serialize(
    service: &ServiceName,
    index: u64,
    instances: &[Arc<Record>],
) -> Result<Bytes, ApiError> {
    let body = ServiceResponseRef {
        service,
        index,
        instances,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

fn json_with_index(index: u64, body: Bytes) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (INDEX_HEADER, HeaderValue::from(index)),
    ];
    (headers, body).into_response()
}

/// A rendered unfiltered lookup, valid while the service's revision is unchanged.
#[derive(Debug, Clone)]
pub struct CachedLookup {
    revision: u64,
    body: Bytes,
}
