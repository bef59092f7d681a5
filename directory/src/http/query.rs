//! Query-string parsing. Repeated keys (`?tag=a&tag=b`) are why this is not `Query<T>`;
//! unknown keys are rejected so a typo (`?tags=`) is an error, not a silently ignored filter.

use std::time::Duration;

use super::error::ApiError;
use crate::registry::{Filter, ServiceName};

/// Parameters of `GET /v1/services/{service}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupQuery {
    /// Instance filter.
    pub filter: Filter,
    /// Blocking query: return once the index exceeds this.
    pub index: Option<u64>,
    /// Blocking query: longest wait.
    pub wait: Option<Duration>,
    /// Refuse (503 `too_stale`) when the node last heard from its cluster longer ago.
    pub max_stale: Option<Duration>,
}

impl LookupQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "tag" => q.filter.tags.push(value.into_owned()),
                "meta" => q.filter.meta.push(parse_meta(&value)?),
                "index" => q.index = Some(parse_index(&value)?),
                "wait" => q.wait = Some(parse_wait(&value)?),
                "max_stale" => q.max_stale = Some(super::staleness::parse_max_stale(&value)?),
                other => return Err(unknown_key(other, "tag, meta, index, wait, max_stale")),
            }
        }
        Ok(q)
    }
}

/// The only parameter of `GET /v1/services` and `GET /v1/services/{service}/instances/{instance}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleQuery {
    /// Refuse (503 `too_stale`) when the node last heard from its cluster longer ago.
    pub max_stale: Option<Duration>,
}

impl StaleQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "max_stale" => q.max_stale = Some(super::staleness::parse_max_stale(&value)?),
                other => return Err(unknown_key(other, "max_stale")),
            }
        }
        Ok(q)
    }
}

/// Parameters of `GET /v1/watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Only events of this service.
    pub service: Option<ServiceName>,
}

impl WatchQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "service" => q.service = Some(ServiceName::new(&value)?),
                other => return Err(unknown_key(other, "service")),
            }
        }
        Ok(q)
    }
}

/// Parameters of `GET /v1/sd/prometheus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdQuery {
    /// Only these services (repeatable; empty: every readable service).
    pub services: Vec<ServiceName>,
    /// Instance filter (`tag` repeatable, all must match; `meta=key:value`).
    pub filter: Filter,
}

impl SdQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*key {
                "service" => q.services.push(ServiceName::new(&value)?),
                "tag" => q.filter.tags.push(value.into_owned()),
                "meta" => q.filter.meta.push(parse_meta(&value)?),
                other => return Err(unknown_key(other, "service, tag, meta")),
            }
        }
        Ok(q)
    }
}

fn unknown_key(key: &str, known: &str) -> ApiError {
    ApiError::invalid_query(format!(
        "unknown query parameter {key:?}; supported: {known}"
    ))
}

fn parse_meta(value: &str) -> Result<(String, String), ApiError> {
    let (k, v) = value.split_once(':').ok_or_else(|| {
        ApiError::invalid_query(format!("meta filter {value:?} must be key:value"))
    })?;
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_index(value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid_query(format!("index {value:?} must be a non-negative integer"))
    })
}

fn parse_wait(value: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(value).map_err(|_| {
        ApiError::invalid_query(format!("wait {value:?} must be a duration like 30s or 5m"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_queries_collect_repeated_filters() {
        let q =
            LookupQuery::parse(Some("tag=a&tag=b%20c&meta=zone:eu-1&index=7&wait=30s")).unwrap();
        assert_eq!(q.filter.tags, ["a", "b c"]);
        assert_eq!(q.filter.meta, [("zone".to_string(), "eu-1".to_string())]);
        assert_eq!(q.index, Some(7));
        assert_eq!(q.wait, Some(Duration::from_secs(30)));
        assert_eq!(LookupQuery::parse(None).unwrap(), LookupQuery::default());
    }

    #[test]
    fn malformed_lookup_queries_are_rejected() {
        for bad in [
            "tags=a",
            "meta=nocolon",
            "index=-1",
            "index=x",
            "wait=soon",
            "max_stale=x",
        ] {
            assert_eq!(
                LookupQuery::parse(Some(bad)).unwrap_err().code(),
                "invalid_query",
                "{bad}"
            );
        }
    }

    #[test]
    fn sd_queries_collect_services_and_filters_and_reject_the_rest() {
        let q = SdQuery::parse(Some("service=a&service=b&tag=x&meta=k:v")).unwrap();
        let names: Vec<&str> = q.services.iter().map(ServiceName::as_str).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(q.filter.tags, ["x"]);
        assert_eq!(q.filter.meta, [("k".to_string(), "v".to_string())]);
        assert_eq!(SdQuery::parse(None).unwrap(), SdQuery::default());
        for (bad, code) in [
            ("services=a", "invalid_query"),
            ("meta=x", "invalid_query"),
            ("service=BAD", "invalid_service_name"),
        ] {
            assert_eq!(SdQuery::parse(Some(bad)).unwrap_err().code(), code, "{bad}");
        }
    }

    #[test]
    fn watch_queries_validate_the_service_name() {
        assert_eq!(
            WatchQuery::parse(Some("service=orders"))
                .unwrap()
                .service
                .unwrap()
                .as_str(),
            "orders"
        );
        assert_eq!(
            WatchQuery::parse(Some("service=BAD")).unwrap_err().code(),
            "invalid_service_name"
        );
        assert_eq!(
            WatchQuery::parse(Some("x=1")).unwrap_err().code(),
            "invalid_query"
        );
    }
}
