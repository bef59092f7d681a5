//! Query parameters of the Consul endpoints. Each endpoint names the parameters it takes;
//! Consul's consistency and formatting flags (`stale`, `consistent`, `cached`, `pretty`),
//! `token` (read by the auth middleware) and `dc=dc1` are accepted everywhere and change
//! nothing; anything else is a 400 naming what the endpoint supports.

use std::time::Duration;

use super::filter::{Filter, Vocabulary};
use super::types::DATACENTER;
use crate::http::ApiError;

/// What an endpoint accepts beyond the common parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// `index` and `wait`.
    pub blocking: bool,
    /// `tag` (repeatable).
    pub tag: bool,
    /// `node-meta` (repeatable).
    pub node_meta: bool,
    /// `passing`.
    pub passing: bool,
    /// `filter`, with this vocabulary.
    pub filter: Option<Vocabulary>,
    /// `near` (accepted, ignored: no coordinates here).
    pub near: bool,
    /// `replace-existing-checks` (accepted, ignored: one check per service, always replaced).
    pub replace_existing_checks: bool,
    /// `note` (accepted, not kept).
    pub note: bool,
}

impl Accepts {
    /// Only the common parameters.
    pub const NOTHING: Self = Self {
        blocking: false,
        tag: false,
        node_meta: false,
        passing: false,
        filter: None,
        near: false,
        replace_existing_checks: false,
        note: false,
    };

    fn names(&self) -> String {
        let mut names = vec!["token", "dc", "stale", "consistent", "cached", "pretty"];
        let optional = [
            (self.blocking, "index, wait"),
            (self.tag, "tag"),
            (self.node_meta, "node-meta"),
            (self.passing, "passing"),
            (self.filter.is_some(), "filter"),
            (self.near, "near"),
            (self.replace_existing_checks, "replace-existing-checks"),
            (self.note, "note"),
        ];
        names.extend(optional.iter().filter(|(on, _)| *on).map(|(_, n)| *n));
        names.join(", ")
    }
}

/// Parsed parameters.
#[derive(Debug, Clone, Default)]
pub struct ConsulQuery {
    /// Blocking query: answer once the index exceeds this (0: answer at once).
    pub index: Option<u64>,
    /// Blocking query: longest wait.
    pub wait: Option<Duration>,
    /// Tags that must all be present.
    pub tags: Vec<String>,
    /// Node meta pairs that must all match.
    pub node_meta: Vec<(String, String)>,
    /// Only instances whose checks all pass.
    pub passing: bool,
    /// A filter expression.
    pub filter: Option<Filter>,
}

impl ConsulQuery {
    /// Parses `raw` for an endpoint that accepts `accepts`.
    pub fn parse(raw: Option<&str>, accepts: Accepts) -> Result<Self, ApiError> {
        let mut q = Self::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match (&*key, accepts) {
                ("token" | "stale" | "consistent" | "cached" | "pretty", _) => {}
                ("dc", _) if value == DATACENTER || value.is_empty() => {}
                ("dc", _) => {
                    return Err(ApiError::invalid_query(format!(
                        "unknown datacenter {value:?}: a directory cluster is the one datacenter {DATACENTER:?}"
                    )));
                }
                ("index", Accepts { blocking: true, .. }) => q.index = Some(index(&value)?),
                ("wait", Accepts { blocking: true, .. }) => q.wait = Some(wait(&value)?),
                ("tag", Accepts { tag: true, .. }) => q.tags.push(value.into_owned()),
                (
                    "node-meta",
                    Accepts {
                        node_meta: true, ..
                    },
                ) => q.node_meta.push(pair(&value)?),
                ("passing", Accepts { passing: true, .. }) => q.passing = flag(&value)?,
                ("near", Accepts { near: true, .. }) => {}
                (
                    "replace-existing-checks",
                    Accepts {
                        replace_existing_checks: true,
                        ..
                    },
                ) => {}
                ("note", Accepts { note: true, .. }) => {}
                (
                    "filter",
                    Accepts {
                        filter: Some(v), ..
                    },
                ) => q.filter = Some(Filter::parse(&value, v)?),
                (other, _) => {
                    return Err(ApiError::invalid_query(format!(
                        "query parameter {other:?} is not supported on this Consul endpoint; supported: {}",
                        accepts.names()
                    )));
                }
            }
        }
        Ok(q)
    }
}

fn index(value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid_query(format!("index {value:?} must be a non-negative integer"))
    })
}

fn wait(value: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(value).map_err(|_| {
        ApiError::invalid_query(format!("wait {value:?} must be a duration like 10s or 5m"))
    })
}

fn pair(value: &str) -> Result<(String, String), ApiError> {
    let (k, v) = value
        .split_once(':')
        .ok_or_else(|| ApiError::invalid_query(format!("node-meta {value:?} must be key:value")))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// Consul's boolean flags: present without a value, `true` or `1` mean yes.
fn flag(value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::invalid_query(format!(
            "passing={other:?} must be true, false, 1, 0 or empty"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTH: Accepts = Accepts {
        blocking: true,
        tag: true,
        node_meta: true,
        passing: true,
        filter: Some(Vocabulary::Health),
        near: true,
        replace_existing_checks: false,
        note: false,
    };

    #[test]
    fn health_queries_parse_every_supported_parameter() {
        let q = ConsulQuery::parse(
            Some("index=7&wait=10s&tag=a&tag=b&node-meta=k:v&passing&dc=dc1&token=x&stale&filter=Service.Port%20%3D%3D%201"),
            HEALTH,
        )
        .unwrap();
        assert_eq!((q.index, q.wait), (Some(7), Some(Duration::from_secs(10))));
        assert_eq!((q.tags.len(), q.node_meta.len(), q.passing), (2, 1, true));
        assert!(q.filter.is_some());
        assert!(
            !ConsulQuery::parse(Some("passing=false"), HEALTH)
                .unwrap()
                .passing
        );
    }

    #[test]
    fn parameters_an_endpoint_does_not_take_are_a_400_listing_what_it_does() {
        for (raw, accepts) in [
            ("index=1", Accepts::NOTHING),
            (
                "passing",
                Accepts {
                    passing: false,
                    ..HEALTH
                },
            ),
            ("bogus=1", HEALTH),
            ("dc=dc2", HEALTH),
            ("index=-1", HEALTH),
            ("wait=forever", HEALTH),
            ("node-meta=nocolon", HEALTH),
            ("passing=maybe", HEALTH),
        ] {
            let err = ConsulQuery::parse(Some(raw), accepts).unwrap_err();
            assert_eq!(err.code(), "invalid_query", "{raw}");
        }
    }
}
