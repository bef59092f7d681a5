//! Staleness on lookup answers: the `X-Directory-Last-Contact` and `X-Directory-Isolated`
//! headers, the `staleness` field of the JSON bodies, and `?max_stale=` (503 `too_stale`
//! instead of an answer from a node that has not heard from its cluster for that long).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::http::header::{HeaderName, HeaderValue};
use directory_api::{ErrorCode, ISOLATED_HEADER, LAST_CONTACT_HEADER, Staleness};

use super::AppState;
use super::error::ApiError;

/// Header: milliseconds since the node last heard from its cluster.
pub const LAST_CONTACT: HeaderName = HeaderName::from_static(LAST_CONTACT_HEADER);
/// Header: whether the node sees itself isolated.
pub const ISOLATED: HeaderName = HeaderName::from_static(ISOLATED_HEADER);

/// The node's staleness now, or 503 `too_stale` when it exceeds `max_stale`.
pub fn within(state: &AppState, max_stale: Option<Duration>) -> Result<Staleness, ApiError> {
    let staleness = state.staleness();
    match max_stale {
        Some(max) if Duration::from_millis(staleness.last_contact_ms) > max => {
            Err(too_stale(&staleness, max))
        }
        _ => Ok(staleness),
    }
}

pub(super) fn too_stale(staleness: &Staleness, max: Duration) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TooStale,
        format!(
            "this node last heard from its cluster {} ms ago (isolated: {}), more than \
             max_stale {}; ask another node or retry without max_stale",
            staleness.last_contact_ms,
            staleness.isolated,
            humantime::format_duration(max)
        ),
    )
}

/// The two staleness headers.
pub fn headers(staleness: &Staleness) -> [(HeaderName, HeaderValue); 2] {
    let isolated = if staleness.isolated { "true" } else { "false" };
    [
        (LAST_CONTACT, HeaderValue::from(staleness.last_contact_ms)),
        (ISOLATED, HeaderValue::from_static(isolated)),
    ]
}

/// Adds `"staleness":{...}` to a rendered JSON object (the cached lookup body is rendered
/// once per change, without it). `body` must be a JSON object, as serde renders one.
pub fn splice(body: &[u8], staleness: &Staleness) -> Result<Bytes, ApiError> {
    let field = serde_json::to_vec(staleness).map_err(ApiError::internal)?;
    let Some((b'}', head)) = body.split_last() else {
        return Err(ApiError::internal("rendered lookup is not a JSON object"));
    };
    let empty = head == b"{";
    let mut out = Vec::with_capacity(body.len() + field.len() + 16);
    out.extend_from_slice(head);
    out.extend_from_slice(if empty { b"" } else { b"," });
    out.extend_from_slice(b"\"staleness\":");
    out.extend_from_slice(&field);
    out.push(b'}');
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Staleness = Staleness {
        last_contact_ms: 12,
        isolated: false,
    };

    #[test]
    fn a_spliced_body_is_the_object_with_a_staleness_field() {
        let body = br#"{"service":"a","index":3,"instances":[]}"#;
        let out = splice(body, &FRESH).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["index"], 3);
        assert_eq!(
            value["staleness"],
            serde_json::json!({"last_contact_ms": 12, "isolated": false})
        );
        let empty: serde_json::Value =
            serde_json::from_slice(&splice(b"{}", &FRESH).unwrap()).unwrap();
        assert_eq!(empty["staleness"]["last_contact_ms"], 12);
        assert!(splice(b"[]", &FRESH).is_err());
    }
}
