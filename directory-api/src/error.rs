//! The one error shape of the HTTP API, `{"error":{"code":"...","message":"..."}}`, and its
//! stable codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code for programs, e.g. `invalid_address`.
    #[schema(value_type = String, example = "invalid_address")]
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Declares [`ErrorCode`] with its wire names in one table.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable error code. Programs match on it; the message is for people. Codes this
        /// version does not know (a newer server) arrive as [`ErrorCode::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version of the crate does not know.
            Other(String),
        }

        impl ErrorCode {
            /// The snake_case code as sent on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(code) => code,
                }
            }

            /// The code for `text` (an [`ErrorCode::Other`] when unknown).
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

error_codes! {
    /// A service name does not match `[a-z0-9][a-z0-9._-]{0,62}`.
    InvalidServiceName = "invalid_service_name",
    /// An instance id does not match `[a-z0-9][a-z0-9._-]{0,62}`.
    InvalidInstanceId = "invalid_instance_id",
    /// A node name does not match `[a-z0-9][a-z0-9._-]{0,62}`.
    InvalidNodeName = "invalid_node_name",
    /// An address is not `host:port`.
    InvalidAddress = "invalid_address",
    /// A TTL is unparsable or outside 1s..=1h.
    InvalidTtl = "invalid_ttl",
    /// Tags are too many, too long or contain control characters.
    InvalidTags = "invalid_tags",
    /// Meta has too many keys, or a bad key or value.
    InvalidMeta = "invalid_meta",
    /// A fingerprint is not 64 hex digits.
    InvalidFingerprint = "invalid_fingerprint",
    /// A topic or topic pattern is malformed.
    InvalidTopic = "invalid_topic",
    /// Subscriptions are too many or malformed.
    InvalidSubscriptions = "invalid_subscriptions",
    /// The body is not the expected JSON.
    InvalidJson = "invalid_json",
    /// The body could not be read.
    InvalidBody = "invalid_body",
    /// A path segment is not valid percent-encoded UTF-8.
    InvalidPath = "invalid_path",
    /// A query parameter is unknown or malformed.
    InvalidQuery = "invalid_query",
    /// A request header is malformed (e.g. a `Last-Event-ID` that is not a change index).
    InvalidHeader = "invalid_header",
    /// The body exceeds the node's size limit.
    PayloadTooLarge = "payload_too_large",
    /// The instance is not registered (unknown or expired).
    InstanceNotFound = "instance_not_found",
    /// The node holds its maximum of instances.
    CapacityFull = "capacity_full",
    /// The node's registry byte budget (`--max-registry-bytes`) has no room for the entry.
    RegistryBytesFull = "registry_bytes_full",
    /// No such endpoint.
    NotFound = "not_found",
    /// The endpoint does not take this method.
    MethodNotAllowed = "method_not_allowed",
    /// No token where one is needed, or an unknown or malformed token (HTTP 401).
    Unauthorized = "unauthorized",
    /// The token may not do this (HTTP 403).
    Forbidden = "forbidden",
    /// The node took longer than its request time limit (HTTP 503).
    RequestTimeout = "request_timeout",
    /// The node failed; details are in its log.
    Internal = "internal",
    /// The node last heard from its cluster longer ago than the request's `max_stale`
    /// allows (HTTP 503): ask another node, or retry without `max_stale`.
    TooStale = "too_stale",
    /// A Consul API endpoint outside the supported subset (HTTP 501), or a registration using
    /// a Consul feature outside it (HTTP 400); the message lists the
    /// subset, and `docs/consul-compat.md` describes it.
    ConsulUnsupported = "consul_unsupported",
}

impl From<&str> for ErrorCode {
    fn from(text: &str) -> Self {
        Self::from_wire(text)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self::from_wire(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for code in [
            "invalid_address",
            "capacity_full",
            "registry_bytes_full",
            "internal",
            "not_found",
            "unauthorized",
            "forbidden",
        ] {
            let parsed = ErrorCode::from_wire(code);
            assert!(!matches!(parsed, ErrorCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        let future = ErrorCode::from_wire("rate_limited");
        assert_eq!(future, ErrorCode::Other("rate_limited".into()));
        assert_eq!(future, "rate_limited");
    }

    #[test]
    fn the_error_body_has_the_documented_shape() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::InvalidTtl,
                message: "m".into(),
            },
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "invalid_ttl", "message": "m"}})
        );
        assert_eq!(serde_json::from_value::<ErrorBody>(json).unwrap(), body);
    }
}
