//! `/v1/services` and `/v1/services/{service}`: the catalog and lookups (with blocking).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use directory_api::{ErrorBody, ServiceCount, ServiceResponse, ServicesResponse};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::path::ServicePath;
use super::query::{LookupQuery, ServicesQuery};
use super::staleness;
use crate::acl::Access;
use crate::registry::{Filter, ServiceName, ServiceView};

/// Header carrying the service's change index on lookups ([`directory_api::INDEX_HEADER`]).
pub const INDEX_HEADER: HeaderName = HeaderName::from_static(directory_api::INDEX_HEADER);

/// List services with their instance counts; a blocking query when `index` is given.
#[utoipa::path(
    get,
    path = "/v1/services",
    params(
        ("index" = Option<u64>, Query, description = "blocking query: hold until the catalog's index (any change of any service) exceeds this"),
        ("wait" = Option<String>, Query, description = "blocking query: longest wait, a whole number of ms, s, m or h (default 5m, capped at 5m)"),
        ("max_stale" = Option<String>, Query, description = "refuse with 503 too_stale when this node last heard from its cluster longer ago (a whole number of ms, s, m or h, e.g. 2s)"),
    ),
    responses(
        (status = 200, description = "the catalog: only the services the token may read", body = ServicesResponse,
         headers(("X-Directory-Index" = u64, description = "the catalog's change index"),
                 ("X-Directory-Last-Contact" = u64, description = "ms since this node last heard from its cluster"),
                 ("X-Directory-Isolated" = bool, description = "whether this node sees no other live member"))),
        (status = 400, description = "invalid query", body = ErrorBody),
        (status = 503, description = "too_stale: the node last heard from its cluster longer ago than max_stale", body = ErrorBody),
        (status = 401, description = "unauthorized: no token, and anonymous requests may read no service", body = ErrorBody),
        (status = 403, description = "forbidden: the token may read no service", body = ErrorBody),
    ),
    tag = "services"
)]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.list()?;
    let query = ServicesQuery::parse(raw.as_deref())?;
    let staleness = staleness::within(&state, query.max_stale)?;
    if let Some(after) = query.blocking.index {
        let wait = state
            .registry()
            .wait_for_any_change(after, deadline(&state, query.blocking.wait));
        tokio::select! {
            _ = wait => {}
            () = state.shutdown().cancelled() => {}
        }
    }
    let (index, services) = state.registry().services();
    let services = services
        .into_iter()
        .filter(|s| access.can_read(s.service.as_str()))
        .map(|s| ServiceCount {
            service: s.service,
            instances: s.instances,
        })
        .collect();
    let body = ServicesResponse {
        index,
        services,
        staleness: Some(staleness),
    };
    let index = [(INDEX_HEADER, HeaderValue::from(index))];
    Ok((index, staleness::headers(&staleness), Json(body)).into_response())
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
        ("wait" = Option<String>, Query, description = "blocking query: longest wait, a whole number of ms, s, m or h (default 5m, capped at 5m)"),
        ("max_stale" = Option<String>, Query, description = "refuse with 503 too_stale when this node last heard from its cluster longer ago (a whole number of ms, s, m or h, e.g. 2s)"),
    ),
    responses(
        (status = 200, description = "live instances; an unknown service is an empty list",
         body = ServiceResponse, headers(("X-Directory-Index" = u64, description = "the service's change index"),
                 ("X-Directory-Last-Contact" = u64, description = "ms since this node last heard from its cluster"),
                 ("X-Directory-Isolated" = bool, description = "whether this node sees no other live member"))),
        (status = 503, description = "too_stale: the node last heard from its cluster longer ago than max_stale", body = ErrorBody),
        (status = 400, description = "invalid service name or query", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service", body = ErrorBody),
    ),
    tag = "services"
)]
pub async fn lookup(
    State(state): State<AppState>,
    access: Access,
    ServicePath(service): ServicePath,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.read(service.as_str())?;
    let query = LookupQuery::parse(raw.as_deref())?;
    if let Some(after) = query.index {
        block(&state, &service, after, &query).await;
    }
    let staleness = staleness::within(&state, query.max_stale)?;
    metrics::counter!("directory_lookups_total").increment(1);
    let (index, body) = if query.filter.is_empty() {
        cached_body(&state, &service)?
    } else {
        render(&state, &service, &query.filter)?
    };
    let body = staleness::splice(&body, &staleness)?;
    Ok((staleness::headers(&staleness), json_with_index(index, body)).into_response())
}

/// Waits for a change past `after`, the wait (capped) or shutdown, whichever comes first.
async fn block(state: &AppState, service: &ServiceName, after: u64, query: &LookupQuery) {
    let deadline = deadline(state, query.wait);
    tokio::select! {
        _ = state.registry().wait_for_change(service, after, deadline) => {}
        () = state.shutdown().cancelled() => {}
    }
}

/// When a blocking query asking for `wait` ends: the default wait without one, never past
/// the cap.
fn deadline(state: &AppState, wait: Option<std::time::Duration>) -> Instant {
    let config = state.config();
    Instant::now() + wait.unwrap_or(config.default_wait).min(config.max_wait)
}

/// The rendered unfiltered lookup, from the cache when the service has not changed since.
fn cached_body(state: &AppState, service: &ServiceName) -> Result<(u64, Bytes), ApiError> {
    let cache = state.lookup_cache();
    let (index, revision) = state.registry().service_revision(service);
    if revision == 0 {
        cache.forget(service);
        return render(state, service, &Filter::default());
    }
    if let Some(body) = cache.get(service, revision) {
        return Ok((index, body));
    }
    let view = state.registry().lookup(service, &Filter::default());
    let revision = view.revision;
    let (index, body) = serialize(service, view)?;
    cache.remember(service, revision, &body);
    Ok((index, body))
}

fn render(
    state: &AppState,
    service: &ServiceName,
    filter: &Filter,
) -> Result<(u64, Bytes), ApiError> {
    serialize(service, state.registry().lookup(service, filter))
}

fn serialize(service: &ServiceName, view: ServiceView) -> Result<(u64, Bytes), ApiError> {
    let body = ServiceResponse {
        service: service.clone(),
        index: view.index,
        instances: view.instances,
        staleness: None,
    };
    serde_json::to_vec(&body)
        .map(|bytes| (body.index, Bytes::from(bytes)))
        .map_err(ApiError::internal)
}

fn json_with_index(index: u64, body: Bytes) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (INDEX_HEADER, HeaderValue::from(index)),
    ];
    (headers, body).into_response()
}
