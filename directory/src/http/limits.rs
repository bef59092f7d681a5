//! The request timeout: ordinary requests get [`crate::listener::HttpLimits::request_timeout`];
//! blocking queries (`GET /v1/services[/{service}]?index=...`, capped by `max_wait`) and
//! watch streams (`GET /v1/watch`, ended by the client or shutdown) are long by design and
//! keep their own caps.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Ends an ordinary request after the request timeout with 503 `request_timeout`.
pub(super) async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if is_long_poll(&request) {
        return next.run(request).await;
    }
    let limit = state.config().http_limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::request_timeout(limit).into_response(),
    }
}

/// Whether the request is a watch stream or a blocking query.
pub(super) fn is_long_poll(request: &Request) -> bool {
    let uri = request.uri();
    let path = uri.path();
    let lookup = path == "/v1/services"
        || path
            .strip_prefix("/v1/services/")
            .is_some_and(|rest| !rest.contains('/'));
    let blocking = lookup
        && uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(key, _)| key == "index"));
    blocking || path == "/v1/watch" || super::consul::is_blocking_query(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watch_streams_and_blocking_queries_are_long_polls() {
        let long =
            |uri: &str| is_long_poll(&Request::get(uri).body(axum::body::Body::empty()).unwrap());
        assert!(long("/v1/watch") && long("/v1/watch?service=a"));
        assert!(long("/v1/services/a?index=3&wait=1m"));
        assert!(!long("/v1/services/a") && !long("/v1/services/a?tag=index"));
        assert!(long("/v1/services?index=3"), "the catalog blocks too");
        assert!(!long("/v1/services"));
        assert!(!long("/v1/services/a/instances/b?index=1"));
        assert!(
            long("/v1/health/service/a?index=3&wait=5m") && long("/v1/catalog/services?index=1")
        );
        assert!(long("/v1/catalog/service/a?index=2"));
        assert!(!long("/v1/health/service/a") && !long("/v1/agent/self?index=1"));
    }
}
