//! `/v1/topics` and `/v1/topics/{topic}/subscribers`: what is subscribed, and the groups a
//! message published on a topic goes to (with blocking).

use axum::Json;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use directory_api::{ErrorBody, Topic, TopicSubscribers, TopicsResponse};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::query::ServicesQuery;
use super::services::INDEX_HEADER;
use super::staleness;
use crate::acl::Access;

/// Every subscribed topic pattern with its groups and their instance counts; a blocking
/// query when `index` is given.
#[utoipa::path(
    get,
    path = "/v1/topics",
    operation_id = "list_topics",
    params(
        ("index" = Option<u64>, Query, description = "blocking query: hold until a subscription changes after this index"),
        ("wait" = Option<String>, Query, description = "blocking query: longest wait, a whole number of ms, s, m or h (default 5m, capped at 5m)"),
        ("max_stale" = Option<String>, Query, description = "refuse with 503 too_stale when this node last heard from its cluster longer ago (a whole number of ms, s, m or h, e.g. 2s)"),
    ),
    responses(
        (status = 200, description = "subscribed patterns, sorted", body = TopicsResponse,
         headers(("X-Directory-Index" = u64, description = "change index of the last subscription change"))),
        (status = 400, description = "invalid query", body = ErrorBody),
        (status = 401, description = "unauthorized: no token, and anonymous requests have no topic rule", body = ErrorBody),
        (status = 403, description = "forbidden: the token has no subscribe or publish rule", body = ErrorBody),
        (status = 503, description = "too_stale: the node last heard from its cluster longer ago than max_stale", body = ErrorBody),
    ),
    tag = "topics"
)]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.list_topics()?;
    let query = ServicesQuery::parse(raw.as_deref())?;
    block(&state, &query).await;
    let staleness = staleness::within(&state, query.max_stale)?;
    let body = state.registry().topics();
    let index = [(INDEX_HEADER, HeaderValue::from(body.index))];
    Ok((index, staleness::headers(&staleness), Json(body)).into_response())
}

/// The consumer groups subscribed to `topic`, each with its live subscribed instances; a
/// blocking query when `index` is given.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/subscribers",
    params(
        ("topic" = String, Path, description = "topic: dot-separated tokens [a-z0-9_-]{1,63}, at most 255 bytes"),
        ("index" = Option<u64>, Query, description = "blocking query: hold until a subscription changes after this index"),
        ("wait" = Option<String>, Query, description = "blocking query: longest wait, a whole number of ms, s, m or h (default 5m, capped at 5m)"),
        ("max_stale" = Option<String>, Query, description = "refuse with 503 too_stale when this node last heard from its cluster longer ago (a whole number of ms, s, m or h, e.g. 2s)"),
    ),
    responses(
        (status = 200, description = "subscribed groups; none is an empty list", body = TopicSubscribers,
         headers(("X-Directory-Index" = u64, description = "change index of the last subscription change"))),
        (status = 400, description = "invalid topic or query", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not publish on this topic", body = ErrorBody),
        (status = 503, description = "too_stale: the node last heard from its cluster longer ago than max_stale", body = ErrorBody),
    ),
    tag = "topics"
)]
pub async fn subscribers(
    State(state): State<AppState>,
    access: Access,
    params: RawPathParams,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let topic = topic_segment(&params)?;
    access.publish(topic.as_str())?;
    let query = ServicesQuery::parse(raw.as_deref())?;
    block(&state, &query).await;
    let staleness = staleness::within(&state, query.max_stale)?;
    let body = state.registry().topic_subscribers(&topic);
    let index = [(INDEX_HEADER, HeaderValue::from(body.index))];
    Ok((index, staleness::headers(&staleness), Json(body)).into_response())
}

/// The `{topic}` segment, validated (400 `invalid_topic`).
fn topic_segment(params: &RawPathParams) -> Result<Topic, ApiError> {
    let value = params
        .iter()
        .find_map(|(k, v)| (k == "topic").then_some(v))
        .ok_or_else(|| ApiError::internal("route has no {topic} segment"))?;
    Ok(Topic::new(value)?)
}

/// Holds a blocking query until a subscription changes past its index, its wait (capped)
/// or shutdown, whichever comes first.
async fn block(state: &AppState, query: &ServicesQuery) {
    let Some(after) = query.blocking.index else {
        return;
    };
    let config = state.config();
    let wait = query.blocking.wait.unwrap_or(config.default_wait);
    let deadline = Instant::now() + wait.min(config.max_wait);
    tokio::select! {
        _ = state.registry().wait_for_topic_change(after, deadline) => {}
        () = state.shutdown().cancelled() => {}
    }
}
