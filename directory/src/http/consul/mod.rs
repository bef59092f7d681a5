//! A Consul-compatible subset of the HTTP API: the same registry seen through Consul's
//! shapes, so Consul clients (py-consul, consul-template, registrators, ...) can use the
//! directory. `docs/consul-compat.md` is the contract: every endpoint, field and parameter,
//! and what differs.
//!
//! Layout:
//! - this module — the sub-router merged into [`super::router`], the headers every answer
//!   carries (`X-Consul-Index`, `X-Consul-KnownLeader`, `X-Consul-LastContact`), the token
//!   (`X-Consul-Token`, `?token=`), the answer for endpoints outside the subset, and the
//!   helpers the handlers share (node addresses, blocking);
//! - `types` — Consul's JSON shapes;
//! - `mapping` — registrations and check state onto records and back (I/O-free);
//! - `shapes` — records rendered in Consul's shapes (I/O-free);
//! - `filter` — the `filter=` subset (I/O-free);
//! - `query` — query parameters;
//! - `reads` — catalog, health, agent/self, status;
//! - `agent` — register, deregister, check pass/warn/fail.

mod agent;
mod filter;
mod mapping;
mod query;
mod reads;
mod shapes;
mod types;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use directory_api::ErrorCode;
use serde::Serialize;
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use crate::acl::Denied;
use crate::gossip::MemberState;
use crate::registry::ServiceName;

pub use mapping::{MIN_DEREGISTER_AFTER, NO_CHECK_LEASE};
// The check rule, shared with the DNS interface (critical instances are not answered).
pub use types::DATACENTER;

/// `X-Consul-Index`: the index a blocking query passes back as `?index=`.
pub const INDEX: HeaderName = HeaderName::from_static("x-consul-index");
/// `X-Consul-KnownLeader`: `false` when the node sees itself isolated.
pub const KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
/// `X-Consul-LastContact`: milliseconds since the node last heard from its cluster.
pub const LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
/// `X-Consul-Token`: a directory token secret.
pub const TOKEN: &str = "x-consul-token";

/// Path prefixes of Consul's API: requests under them are answered by this module (the
/// supported subset, or a `consul_unsupported` error).
const CONSUL_PREFIXES: [&str; 22] = [
    "agent",
    "catalog",
    "health",
    "kv",
    "status",
    "session",
    "acl",
    "event",
    "coordinate",
    "operator",
    "query",
    "txn",
    "connect",
    "config",
    "internal",
    "peering",
    "snapshot",
    "namespace",
    "namespaces",
    "partition",
    "partitions",
    "discovery-chain",
];

/// The supported subset, as named in error messages.
const SUBSET: &str = "GET /v1/catalog/services, GET /v1/catalog/service/:name, \
GET /v1/catalog/nodes, GET /v1/health/service/:name, GET /v1/agent/self, \
GET /v1/status/leader, GET /v1/status/peers, PUT /v1/agent/service/register, \
PUT /v1/agent/service/deregister/:id, PUT /v1/agent/check/pass|warn|fail/service::id";

/// The Consul routes, with the Consul headers on every answer.
pub fn router(state: AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/v1/catalog/services", get(reads::catalog_services))
        .route("/v1/catalog/service/{service}", get(reads::catalog_service))
        .route("/v1/catalog/nodes", get(reads::catalog_nodes))
        .route("/v1/health/service/{service}", get(reads::health_service))
        .route("/v1/agent/self", get(reads::agent_self))
        .route("/v1/status/leader", get(reads::status_leader))
        .route("/v1/status/peers", get(reads::status_peers))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/check/{op}/{check}", put(agent::check));
    for prefix in CONSUL_PREFIXES {
        router = router.route(&format!("/v1/{prefix}/{{*rest}}"), any(unsupported));
        // `/v1/health` itself is the directory's own liveness endpoint.
        if prefix != "health" {
            router = router.route(&format!("/v1/{prefix}"), any(unsupported));
        }
    }
    router.route_layer(middleware::from_fn_with_state(state, consul_headers))
}

/// Whether `path` belongs to Consul's API.
pub fn is_consul_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return false;
    };
    let first = rest.split('/').next().unwrap_or_default();
    CONSUL_PREFIXES.contains(&first) && !(first == "health" && rest == "health")
}

/// Whether `uri` is a Consul blocking query (a read with `index`): like the native ones, it
/// is capped by `max_wait`, not by the request timeout.
pub fn is_blocking_query(uri: &axum::http::Uri) -> bool {
    let path = uri.path();
    let blocking_read = path == "/v1/catalog/services"
        || ["/v1/catalog/service/", "/v1/health/service/"]
            .iter()
            .any(|p| path.strip_prefix(p).is_some_and(|rest| !rest.contains('/')));
    blocking_read
        && uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(key, _)| key == "index"))
}

/// The token a Consul client presents on a Consul path: `X-Consul-Token`, else `?token=`.
pub fn token(
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if !is_consul_path(path) {
        return Ok(None);
    }
    if let Some(value) = headers.get(TOKEN) {
        return match value.to_str().map(str::trim) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret.to_owned())),
            _ => Err(Denied::Malformed("X-Consul-Token").into()),
        };
    }
    let from_query = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    match from_query {
        Some(secret) if secret.trim().is_empty() => Err(Denied::Malformed("token").into()),
        other => Ok(other),
    }
}

async fn consul_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let staleness = state.staleness();
    let headers = response.headers_mut();
    if !headers.contains_key(INDEX) {
        let index = consul_index(state.registry().index());
        headers.insert(INDEX, HeaderValue::from(index));
    }
    let leader = if staleness.isolated { "false" } else { "true" };
    headers.insert(KNOWN_LEADER, HeaderValue::from_static(leader));
    headers.insert(LAST_CONTACT, HeaderValue::from(staleness.last_contact_ms));
    response
}

async fn unsupported(method: Method, request: Request) -> ApiError {
    unsupported_endpoint(&method, request.uri().path())
}

/// The Consul index of a directory change index: one more, because Consul clients treat 0
/// as "no index" while the directory's indexes start at 0. A client's `?index=N` is the
/// directory's `N - 1` (`directory_index`).
pub fn consul_index(index: u64) -> u64 {
    index.saturating_add(1)
}

/// The directory change index a client's `?index=` stands for.
fn directory_index(consul: u64) -> u64 {
    consul.saturating_sub(1)
}

/// A JSON answer with `X-Consul-Index`.
fn answer<T: Serialize>(index: u64, body: &T) -> Response {
    (
        [(INDEX, HeaderValue::from(consul_index(index)))],
        Json(body),
    )
        .into_response()
}

/// The answer for an endpoint outside the subset: 501, not 404, because Consul clients read
/// a 404 as "no such key/service" (py-consul's `kv.get` returns `None`), which would be a
/// misleading empty success.
fn unsupported_endpoint(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        ErrorCode::ConsulUnsupported,
        format!(
            "{method} {path} is outside the Consul API subset this directory serves: {SUBSET}; \
             see docs/consul-compat.md"
        ),
    )
}

/// The address this node presents as its own: the HTTP listen IP, else the gossip
/// advertise IP when the HTTP address is a wildcard, else loopback.
fn local_host(state: &AppState) -> IpAddr {
    let http = state.config().http_addr.ip();
    if !http.is_unspecified() {
        return http;
    }
    state
        .gossip()
        .map(|g| g.advertise_addr().ip())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Node name → address of every node this one knows alive (itself included).
async fn node_addresses(state: &AppState) -> HashMap<String, String> {
    let local = state.config().registry.node.to_string();
    let mut nodes = HashMap::from([(local.clone(), local_host(state).to_string())]);
    if let Some(gossip) = state.gossip() {
        for m in gossip.members().await {
            if m.state == MemberState::Alive && m.identity.name != local {
                nodes.insert(m.identity.name, m.identity.addr.ip().to_string());
            }
        }
    }
    nodes
}

/// The deadline of a blocking query: `wait` (default and cap from the config) from now.
fn deadline(state: &AppState, wait: Option<std::time::Duration>) -> Instant {
    let config = state.config();
    Instant::now() + wait.unwrap_or(config.default_wait).min(config.max_wait)
}

/// Blocks until `service` changes past `after`, the wait passes or the node shuts down.
async fn block_on_service(state: &AppState, service: &ServiceName, q: &query::ConsulQuery) {
    let Some(after) = q.index.filter(|i| *i > 0).map(directory_index) else {
        return;
    };
    let deadline = deadline(state, q.wait);
    tokio::select! {
        _ = state.registry().wait_for_change(service, after, deadline) => {}
        () = state.shutdown().cancelled() => {}
    }
}

/// Blocks until the registry's index passes `after` (any service), the wait passes or the
/// node shuts down.
async fn block_on_catalog(state: &AppState, q: &query::ConsulQuery) {
    let Some(after) = q.index.filter(|i| *i > 0).map(directory_index) else {
        return;
    };
    let deadline = deadline(state, q.wait);
    let mut events = state.registry().subscribe();
    while state.registry().index() <= after {
        tokio::select! {
            event = events.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                return;
            },
            () = tokio::time::sleep_until(deadline) => return,
            () = state.shutdown().cancelled() => return,
        }
    }
}
