//! Access control at the HTTP edge: the middleware that resolves a request's token into an
//! [`Access`], the extractor handlers use to get it, and the audit log of writes.
//!
//! The middleware never refuses by itself: it stores the outcome, and a handler that takes
//! an [`Access`] gets the refusal (401) when the token was unknown or malformed. So
//! `GET /v1/health`, which takes none, answers whatever the request carries.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::acl::{Access, Denied};

/// Header carrying a token secret, as an alternative to `Authorization: Bearer`.
pub const TOKEN_HEADER: &str = "x-directory-token";

/// Resolves the request's token and, for writes under ACLs, logs the outcome (audit).
pub(super) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = match state.acl() {
        None => Ok(Access::open()),
        Some(acl) => presented_token(&request).and_then(|t| Ok(acl.authenticate(t.as_deref())?)),
    };
    let audit = is_write(request.method()) && access.as_ref().map_or(true, Access::is_enforced);
    let who = access
        .as_ref()
        .ok()
        .and_then(Access::token_id)
        .map(str::to_owned);
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    request.extensions_mut().insert(access);
    let response = next.run(request).await;
    if audit {
        tracing::info!(
            target: "directory::audit",
            token = who.as_deref().unwrap_or("anonymous"),
            %method,
            path,
            status = response.status().as_u16(),
            "write"
        );
    }
    response
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The secret a request presents: the native headers, else on Consul paths `X-Consul-Token`
/// or `?token=` (see [`super::consul::token`]).
fn presented_token(request: &Request) -> Result<Option<String>, ApiError> {
    match token(request.headers())? {
        Some(secret) => Ok(Some(secret.to_owned())),
        None => super::consul::token(
            request.headers(),
            request.uri().path(),
            request.uri().query(),
        ),
    }
}

/// The secret a request presents, if any; a header that is present but unusable is an
/// error rather than "no token", so a client bug is not mistaken for anonymous access.
fn token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let malformed = |what| ApiError::from(Denied::Malformed(what));
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| malformed("Authorization"))?;
        let secret = text
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("Authorization"))?;
        return Ok(Some(secret));
    }
    match headers.get(TOKEN_HEADER) {
        None => Ok(None),
        Some(value) => match value.to_str().map(str::trim) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
            _ => Err(malformed("X-Directory-Token")),
        },
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Result<Access, ApiError>>() {
            Some(outcome) => outcome.clone(),
            // `router` always installs `authenticate`; refusing is the safe answer anyway.
            None => Err(ApiError::internal("access middleware missing")),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_token_is_read_from_either_header_and_a_malformed_one_is_refused() {
        assert_eq!(token(&headers(&[])).unwrap(), None);
        let bearer = headers(&[("authorization", "Bearer dirtok_a")]);
        assert_eq!(token(&bearer).unwrap(), Some("dirtok_a"));
        let custom = headers(&[(TOKEN_HEADER, "dirtok_b")]);
        assert_eq!(token(&custom).unwrap(), Some("dirtok_b"));
        for bad in [
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[(TOKEN_HEADER, " ")]),
        ] {
            assert_eq!(token(&bad).unwrap_err().status().as_u16(), 401);
        }
    }
}
