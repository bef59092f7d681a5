//! Rules: what a token (or an anonymous request) may do.
//!
//! A rule is one short string, the same in the ACL file and on the command line:
//! - `read:PATTERN` — look up, block on and watch the services matching `PATTERN`;
//! - `write:PATTERN` — register, renew, deregister (and read) instances of those services;
//! - `subscribe:PATTERN` — register subscriptions whose topic pattern is covered (the
//!   registration also needs `write` on the service);
//! - `publish:PATTERN` — ask which groups subscribe to the covered topics
//!   (`GET /v1/topics/{topic}/subscribers`), which is what publishing needs;
//! - `operator` — cluster operations: `GET /v1/cluster/members` and `GET /metrics`.
//!
//! `PATTERN` is an exact service name (`billing`), a prefix ending in `*` (`billing.*`
//! matches `billing.eu` and `billing.us`, `bill*` matches `billing`), or `*` for every service.
//! For `subscribe` and `publish` it applies to the text of the topic or subscription
//! pattern: `subscribe:orders.*` allows `orders.*.created` and `orders.>` but not `>` or
//! `*.created`, which would reach topics outside `orders.`.

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
    Subscribe(Pattern),
    Publish(Pattern),
    Operator,
}

/// A rule that does not parse. Nothing is loaded when a file holds one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Not `read:`, `write:`, `subscribe:` or `publish:PATTERN`, or `operator`.
    #[error(
        "invalid rule {0:?}: expected read:PATTERN, write:PATTERN, subscribe:PATTERN, publish:PATTERN or operator"
    )]
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
            Some(("subscribe", pattern)) => RuleKind::Subscribe(Pattern::parse(pattern)?),
            Some(("publish", pattern)) => RuleKind::Publish(Pattern::parse(pattern)?),
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
            RuleKind::Subscribe(p) => write!(f, "subscribe:{p}"),
            RuleKind::Publish(p) => write!(f, "publish:{p}"),
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
            Rule(RuleKind::Subscribe(Pattern::Prefix(String::new()))),
            Rule(RuleKind::Publish(Pattern::Prefix(String::new()))),
            Rule(RuleKind::Operator),
        ])
    }

    /// Whether `service` may be read (looked up, blocked on, watched).
    pub fn can_read(&self, service: &str) -> bool {
        self.rules.iter().any(|r| match &r.0 {
            RuleKind::Read(p) | RuleKind::Write(p) => p.matches(service),
            _ => false,
        })
    }

    /// Whether a subscription with topic pattern `pattern` (its text) may be registered.
    pub fn can_subscribe(&self, pattern: &str) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.0, RuleKind::Subscribe(p) if p.matches(pattern)))
    }

    /// Whether the subscribers of `topic` may be read (to publish on it).
    pub fn can_publish(&self, topic: &str) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.0, RuleKind::Publish(p) if p.matches(topic)))
    }

    /// Whether any topic rule exists (the topic listing is refused outright otherwise).
    pub fn any_topic(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.0, RuleKind::Subscribe(_) | RuleKind::Publish(_)))
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
        let all = set(&["write:*", "subscribe:*", "publish:*", "operator"]);
        assert!(all.can_write("anything") && all.is_operator());
        assert_eq!(all, RuleSet::everything());
    }

    #[test]
    fn topic_rules_cover_pattern_text_by_prefix_and_grant_nothing_else() {
        let rules = set(&["subscribe:orders.*", "publish:orders.eu.*"]);
        assert!(rules.can_subscribe("orders.*.created") && rules.can_subscribe("orders.>"));
        assert!(!rules.can_subscribe(">") && !rules.can_subscribe("*.created"));
        assert!(rules.can_publish("orders.eu.created") && !rules.can_publish("orders.us.x"));
        assert!(!rules.can_read("orders") && !rules.reads_any() && rules.any_topic());
        assert!(!set(&["read:*"]).any_topic());
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
        for good in [
            "read:orders",
            "write:billing.*",
            "read:*",
            "operator",
            "subscribe:orders.*",
            "publish:*",
        ] {
            assert_eq!(good.parse::<Rule>().unwrap().to_string(), good);
        }
    }
}
