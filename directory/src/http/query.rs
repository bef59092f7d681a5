//! Query-string parsing, the same rules on every route: a route accepts only its own keys
//! (a typo such as `?tags=` is an error, not a silently ignored filter), no value is empty,
//! and each value is checked like the field it stands for. Repeated keys (`?tag=a&tag=b`)
//! are why this is not `Query<T>`. The OpenAPI document states the same rules
//! (`openapi::query_parameters`), from the constants here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::registry::{Filter, MAX_META_KEYS, MAX_TAGS, Meta, ServiceName, Tags};

/// Largest `index` accepted (2^53 - 1): every index a node hands out is far below it, and
/// JSON clients that read numbers as doubles still hold it exactly.
pub const MAX_INDEX: u64 = (1 << 53) - 1;
/// The form of durations in queries (`wait`, `max_stale`): a whole number of milliseconds,
/// seconds, minutes or hours.
pub const WAIT_PATTERN: &str = "^[0-9]{1,12}(ms|s|m|h)$";

/// Parameters of a blocking query (`index`, `wait`), on `/v1/services` and
/// `/v1/services/{service}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blocking {
    /// Return once the index exceeds this.
    pub index: Option<u64>,
    /// Longest wait.
    pub wait: Option<Duration>,
}

impl Blocking {
    /// Takes `key` if it is a blocking-query parameter; false if it is not one.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, ApiError> {
        match key {
            "index" => self.index = Some(parse_index(value)?),
            "wait" => self.wait = Some(parse_duration("wait", value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Parameters of `GET /v1/services`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesQuery {
    /// Blocking query on the catalog's index.
    pub blocking: Blocking,
    /// Refuse (503 `too_stale`) when the node last heard from its cluster longer ago.
    pub max_stale: Option<Duration>,
}

impl ServicesQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        const KNOWN: &str = "index, wait, max_stale";
        let mut q = Self::default();
        for (key, value) in pairs(raw, KNOWN)? {
            match &*key {
                "max_stale" => q.max_stale = Some(parse_max_stale(&value)?),
                other if q.blocking.take(other, &value)? => {}
                other => return Err(unknown_key(other, KNOWN)),
            }
        }
        Ok(q)
    }
}

/// The only parameter of `GET /v1/services/{service}/instances/{instance}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleQuery {
    /// Refuse (503 `too_stale`) when the node last heard from its cluster longer ago.
    pub max_stale: Option<Duration>,
}

impl StaleQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in pairs(raw, "max_stale")? {
            match &*key {
                "max_stale" => q.max_stale = Some(parse_max_stale(&value)?),
                other => return Err(unknown_key(other, "max_stale")),
            }
        }
        Ok(q)
    }
}

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
        const KNOWN: &str = "tag, meta, index, wait, max_stale";
        let mut q = Self::default();
        let mut blocking = Blocking::default();
        for (key, value) in pairs(raw, KNOWN)? {
            match &*key {
                "tag" => q.filter.tags.push(parse_tag(&value, q.filter.tags.len())?),
                "meta" => q.filter.meta.push(parse_meta(&value, q.filter.meta.len())?),
                "max_stale" => q.max_stale = Some(parse_max_stale(&value)?),
                other if blocking.take(other, &value)? => {}
                other => return Err(unknown_key(other, KNOWN)),
            }
        }
        (q.index, q.wait) = (blocking.index, blocking.wait);
        Ok(q)
    }
}

/// Parameters of `GET /v1/watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Only events of this service.
    pub service: Option<ServiceName>,
    /// Resume after this change index (`Last-Event-ID` takes precedence).
    pub index: Option<u64>,
}

impl WatchQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in pairs(raw, "service, index")? {
            match &*key {
                "service" => q.service = Some(ServiceName::new(&value)?),
                "index" => q.index = Some(parse_index(&value)?),
                other => return Err(unknown_key(other, "service, index")),
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
        const KNOWN: &str = "service, tag, meta";
        let mut q = Self::default();
        for (key, value) in pairs(raw, KNOWN)? {
            match &*key {
                "service" => q.services.push(ServiceName::new(&value)?),
                "tag" => q.filter.tags.push(parse_tag(&value, q.filter.tags.len())?),
                "meta" => q.filter.meta.push(parse_meta(&value, q.filter.meta.len())?),
                other => return Err(unknown_key(other, KNOWN)),
            }
        }
        Ok(q)
    }
}

/// For routes that take no query parameters: any parameter is an `invalid_query` error,
/// as an unknown one is on the routes that take some.
#[derive(Debug, Clone, Copy)]
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        no_query(parts.uri.query()).map(|()| Self)
    }
}

/// Refuses any query parameter (the rule of [`NoQuery`]).
pub(super) fn no_query(raw: Option<&str>) -> Result<(), ApiError> {
    match pairs(raw, "none")?.first() {
        Some((key, _)) => Err(unknown_key(key, "none")),
        None => Ok(()),
    }
}

type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The decoded `key=value` pairs; an empty value is an error (every parameter has
/// `minLength: 1` in the document). `known` names the route's keys for the message.
fn pairs<'a>(raw: Option<&'a str>, known: &str) -> Result<Pairs<'a>, ApiError> {
    let pairs: Pairs<'a> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).collect();
    match pairs.iter().find(|(_, value)| value.is_empty()) {
        Some((key, _)) => Err(ApiError::invalid_query(format!(
            "query parameter {key:?} has an empty value; supported: {known}"
        ))),
        None => Ok(pairs),
    }
}

fn unknown_key(key: &str, known: &str) -> ApiError {
    ApiError::invalid_query(format!(
        "unknown query parameter {key:?}; supported: {known}"
    ))
}

/// A `tag` filter: what a registered tag may be (so a filter that could never match is an
/// error), at most [`MAX_TAGS`] of them.
fn parse_tag(value: &str, held: usize) -> Result<String, ApiError> {
    if held >= MAX_TAGS {
        return Err(ApiError::invalid_query(format!(
            "at most {MAX_TAGS} tag filters"
        )));
    }
    Tags::new(vec![value.to_owned()])?;
    Ok(value.to_owned())
}

/// A `meta` filter, `key:value` (split at the first colon; keys have none): what a
/// registered meta pair may be, at most [`MAX_META_KEYS`] of them.
fn parse_meta(value: &str, held: usize) -> Result<(String, String), ApiError> {
    if held >= MAX_META_KEYS {
        return Err(ApiError::invalid_query(format!(
            "at most {MAX_META_KEYS} meta filters"
        )));
    }
    let (k, v) = value.split_once(':').ok_or_else(|| {
        ApiError::invalid_query(format!("meta filter {value:?} must be key:value"))
    })?;
    Meta::new(BTreeMap::from([(k.to_owned(), v.to_owned())]))?;
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_index(value: &str) -> Result<u64, ApiError> {
    value
        .parse()
        .ok()
        .filter(|index| *index <= MAX_INDEX)
        .ok_or_else(|| {
            ApiError::invalid_query(format!(
                "index {value:?} must be an integer from 0 to {MAX_INDEX}"
            ))
        })
}

/// A duration parameter (`wait`, `max_stale`) as [`WAIT_PATTERN`] describes it.
/// Parses `max_stale` (a duration like `2s` or `500ms`).
pub fn parse_max_stale(value: &str) -> Result<Duration, ApiError> {
    parse_duration("max_stale", value)
}

pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::invalid_query(format!(
            "{key} {value:?} must be a whole number of ms, s, m or h, like 30s or 500ms"
        ))
    };
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let unit_secs = match unit {
        "ms" => None,
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&digits) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    // 12 digits of hours is below u64::MAX seconds: no overflow.
    Ok(unit_secs.map_or(Duration::from_millis(n), |s| Duration::from_secs(n * s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_stale_parses_durations_and_rejects_the_rest() {
        assert_eq!(parse_max_stale("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_max_stale("soon").unwrap_err().code(), "invalid_query");
    }

    #[test]
    fn lookup_queries_collect_repeated_filters() {
        let q =
            LookupQuery::parse(Some("tag=a&tag=b%20c&meta=zone:eu-1&index=7&wait=30s")).unwrap();
        assert_eq!(q.filter.tags, ["a", "b c"]);
        assert_eq!(q.filter.meta, [("zone".to_string(), "eu-1".to_string())]);
        assert_eq!(q.index, Some(7));
        assert_eq!(q.wait, Some(Duration::from_secs(30)));
        assert_eq!(LookupQuery::parse(None).unwrap(), LookupQuery::default());
        let q = LookupQuery::parse(Some("meta=url:http://x&wait=250ms")).unwrap();
        assert_eq!(q.filter.meta[0].1, "http://x");
        assert_eq!(q.wait, Some(Duration::from_millis(250)));
    }

    #[test]
    fn malformed_lookup_queries_are_rejected() {
        for bad in [
            "tags=a",
            "tag=",
            "meta=nocolon",
            "meta=",
            "meta=bad%20key:v",
            "tag=a%01b",
            "index=-1",
            "index=x",
            "index=9007199254740992",
            "wait=soon",
            "wait=1m30s",
            "wait=5min",
            "wait=s",
            "wait=1234567890123s",
            "max_stale=x",
        ] {
            let err = LookupQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
        let too_many = vec!["tag=t"; MAX_TAGS + 1].join("&");
        assert!(LookupQuery::parse(Some(&too_many)).is_err());
        let enough = vec!["tag=t"; MAX_TAGS].join("&");
        assert!(LookupQuery::parse(Some(&enough)).is_ok());
    }

    #[test]
    fn every_route_rejects_unknown_and_empty_parameters_alike() {
        for raw in ["x=1", "index="] {
            let codes = [
                ServicesQuery::parse(Some(raw)).unwrap_err(),
                LookupQuery::parse(Some(raw)).unwrap_err(),
                WatchQuery::parse(Some(raw)).unwrap_err(),
                StaleQuery::parse(Some(raw)).unwrap_err(),
                SdQuery::parse(Some(raw)).unwrap_err(),
            ];
            for err in codes {
                assert_eq!(err.code(), "invalid_query", "{raw}");
            }
        }
        let q = ServicesQuery::parse(Some("index=3&wait=2s")).unwrap();
        assert_eq!(q.blocking.index, Some(3));
        assert_eq!(q.blocking.wait, Some(Duration::from_secs(2)));
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
            ("tag=", "invalid_query"),
            ("service=BAD", "invalid_service_name"),
        ] {
            assert_eq!(SdQuery::parse(Some(bad)).unwrap_err().code(), code, "{bad}");
        }
    }

    #[test]
    fn watch_queries_validate_the_service_name_and_index() {
        let q = WatchQuery::parse(Some("service=orders&index=4")).unwrap();
        assert_eq!(q.service.unwrap().as_str(), "orders");
        assert_eq!(q.index, Some(4));
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
