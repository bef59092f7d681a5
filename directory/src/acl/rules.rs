//! Rules: what a token (or an anonymous request) may do.
//!
//! A rule is one short string, the same in the ACL file and on the command line:
//! - `read:PATTERN` — look up, block on and watch the services matching `PATTERN`;
//! - `write:PATTERN` — register, renew, deregister (and read) instances of those services;
//! - `operator` — cluster operations: `GET /v1/cluster/members` and `GET /metrics`.
//!
//! `PATTERN` is an exact service name (`billing`), a prefix ending in `*` (`billing.*`
//! matches `billing.eu` and `billing.us`, `bill*` matches `billing`), or `*` for every service.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which services a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Exactly this service name.
    Exact(String),
    /// Every service name starting with this (empty: every service).
    Prefix(String),
}

impl Pattern {
    fn matches(&self, service: &str) -> bool {
        match self {
            Self::Exact(name) => name == service,
            Self::Prefix(prefix) => service.starts_with(prefix.as_str()),
        }
    }

    fn parse(text: &str) -> Result<Self, RuleError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let valid = body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !valid || (body.is_empty() && !prefix) || body.len() > 63 {
            return Err(RuleError::Pattern(text.to_owned()));
        }
        Ok(if prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// One rule (see the module docs for the syntax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rule(RuleKind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleKind {
    Read(Pattern),
    Write(Pattern),
    Operator,
}

/// A rule that does not parse. Nothing is loaded when a file holds one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Not `read:PATTERN`, `write:PATTERN` or `operator`.
    #[error("invalid rule {0:?}: expected read:PATTERN, write:PATTERN or operator")]
    Syntax(String),
    /// The pattern is not a service name, a service-name prefix ending in `*`, or `*`.
    #[error(
        "invalid service pattern {0:?}: expected a service name ([a-z0-9._-]), a prefix ending in * or *"
    )]
    Pattern(String),
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let kind = match text.split_once(':') {
            Some(("read", pattern)) => RuleKind::Read(Pattern::parse(pattern)?),
            Some(("write", pattern)) => RuleKind::Write(Pattern::parse(pattern)?),
            None if text == "operator" => RuleKind::Operator,
            _ => return Err(RuleError::Syntax(text.to_owned())),
        };
        Ok(Self(kind))
    }
}

impl TryFrom<String> for Rule {
    type Error = RuleError;

    fn try_from(text: String) -> Result<Self, RuleError> {
        text.parse()
    }
}

impl From<Rule> for String {
    fn from(rule: Rule) -> Self {
        rule.to_string()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            RuleKind::Read(p) => write!(f, "read:{p}"),
            RuleKind::Write(p) => write!(f, "write:{p}"),
            RuleKind::Operator => f.write_str("operator"),
        }
    }
}

/// The rules of one token (or of anonymous requests): a union, so adding a rule only ever
/// grants more. `write` implies `read` on the same services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// A set of the given rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Every right: what a node without an ACL file grants to everyone.
    pub fn everything() -> Self {
        Self::new(vec![
            Rule(RuleKind::Write(Pattern::Prefix(String::new()))),
            Rule(RuleKind::Operator),
        ])
    }

    /// Whether `service` may be read (looked up, blocked on, watched).
    pub fn can_read(&self, service: &str) -> bool {
        self.rules.iter().any(|r| match &r.0 {
            RuleKind::Read(p) | RuleKind::Write(p) => p.matches(service),
            RuleKind::Operator => false,
        })
    }

    /// Whether instances of `service` may be registered, renewed or deregistered.
    pub fn can_write(&self, service: &str) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.0, RuleKind::Write(p) if p.matches(service)))
    }

    /// Whether cluster operations (members, metrics) are allowed.
    pub fn is_operator(&self) -> bool {
        self.rules.iter().any(|r| r.0 == RuleKind::Operator)
    }

    /// Whether any service at all may be read (the catalog and an unfiltered watch are
    /// refused outright otherwise, rather than answered with an empty list).
    pub fn reads_any(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.0, RuleKind::Read(_) | RuleKind::Write(_)))
    }

    /// Whether the set grants nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[&str]) -> RuleSet {
        RuleSet::new(rules.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn exact_prefix_and_wildcard_patterns_match_as_documented() {
        let rules = set(&["read:orders", "write:billing.*", "read:inv*"]);
        assert!(rules.can_read("orders"));
        assert!(!rules.can_read("orders-2"), "exact means exact");
        assert!(rules.can_read("billing.eu") && rules.can_write("billing.eu"));
        assert!(!rules.can_write("billing"), "billing.* needs the dot");
        assert!(rules.can_read("inventory") && !rules.can_write("inventory"));
        assert!(!rules.can_write("orders"), "read does not grant write");
        assert!(!rules.is_operator());
        let all = set(&["write:*", "operator"]);
        assert!(all.can_write("anything") && all.is_operator());
        assert_eq!(all, RuleSet::everything());
    }

    #[test]
    fn the_empty_set_grants_nothing() {
        let none = RuleSet::default();
        assert!(!none.can_read("a") && !none.can_write("a") && !none.is_operator());
        assert!(!none.reads_any() && none.is_empty());
        assert!(!set(&["operator"]).reads_any());
    }

    #[test]
    fn malformed_rules_are_rejected_and_valid_ones_round_trip() {
        for bad in [
            "read",
            "read:",
            "write:Orders",
            "admin",
            "read:a b",
            "operator:x",
            "read:**",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
        for good in ["read:orders", "write:billing.*", "read:*", "operator"] {
            assert_eq!(good.parse::<Rule>().unwrap().to_string(), good);
        }
    }
}
