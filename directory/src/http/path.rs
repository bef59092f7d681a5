//! Path extractors that yield validated names, so no handler parses a path segment itself.
//! An invalid segment is a 400 with the name's own code (`invalid_service_name`, ...).

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::registry::{InstanceId, ServiceName, ValidationError};

/// The `{service}` segment, validated.
#[derive(Debug, Clone)]
pub struct ServicePath(pub ServiceName);

/// The `{service}` and `{instance}` segments, validated.
#[derive(Debug, Clone)]
pub struct InstancePath {
    /// The service.
    pub service: ServiceName,
    /// The instance.
    pub instance: InstanceId,
}

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state).await?;
        Ok(Self(segment(&params, "service", ServiceName::new)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state).await?;
        Ok(Self {
            service: segment(&params, "service", ServiceName::new)?,
            instance: segment(&params, "instance", InstanceId::new)?,
        })
    }
}

/// The (percent-decoded) segment `key`, parsed; a route without it is a programming error
/// reported as 500.
fn segment<T>(
    params: &RawPathParams,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<T, ApiError> {
    let value = params
        .iter()
        .find_map(|(k, v)| (k == key).then_some(v))
        .ok_or_else(|| ApiError::internal(format!("route has no {{{key}}} segment")))?;
    Ok(parse(value)?)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn echo(InstancePath { service, instance }: InstancePath) -> String {
        format!("{service}/{instance}")
    }

    async fn call(uri: &str) -> (StatusCode, String) {
        let app = Router::new().route("/s/{service}/i/{instance}", get(echo));
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn segments_are_percent_decoded_and_validated_in_order() {
        assert_eq!(
            call("/s/orders/i/a%2Db").await,
            (StatusCode::OK, "orders/a-b".into())
        );
        let (status, body) = call("/s/Orders/i/BAD").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("\"invalid_service_name\""), "{body}");
        let (_, body) = call("/s/orders/i/BAD").await;
        assert!(body.contains("\"invalid_instance_id\""), "{body}");
    }

    #[tokio::test]
    async fn a_segment_that_is_not_utf8_is_a_json_error() {
        let (status, body) = call("/s/%FF/i/a").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("\"invalid_path\""), "{body}");
    }
}
