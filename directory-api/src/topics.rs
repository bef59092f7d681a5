//! Publish/subscribe names: a [`Topic`] (`orders.eu.created`), a [`TopicPattern`]
//! (`orders.*.created`, `orders.>`), one [`Subscription`] (a pattern on behalf of a consumer
//! group) and the bounded list of them an instance registers, [`Subscriptions`].
//!
//! Matching follows NATS subjects: tokens are separated by `.`; in a pattern `*` stands for
//! exactly one token and `>` for one or more remaining tokens (only as the last token).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::newtype::text_type;
use crate::{ServiceName, ValidationError};

/// Longest topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Longest token of a topic or pattern, in bytes (the service name limit).
pub const MAX_TOKEN_LEN: usize = 63;
/// Most subscriptions one instance may register: enough for a service's real interests,
/// small enough that matching a topic against every live pattern stays cheap.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// A literal token: `[a-z0-9_-]{1,63}` (a service name's characters without the dot, which
/// separates tokens).
fn is_literal_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Why `text` is not a topic (`None` if it is one).
fn topic_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() || text.len() > MAX_TOPIC_LEN {
        return Some("must be 1 to 255 bytes");
    }
    if !text.split('.').all(is_literal_token) {
        return Some("tokens separated by '.' must each match [a-z0-9_-]{1,63}");
    }
    None
}

/// Why `text` is not a pattern (`None` if it is one).
fn pattern_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() || text.len() > MAX_TOPIC_LEN {
        return Some("must be 1 to 255 bytes");
    }
    let tokens: Vec<&str> = text.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        match *token {
            "*" => {}
            ">" if i == last => {}
            ">" => return Some("'>' may only be the last token"),
            t if is_literal_token(t) => {}
            _ => return Some("tokens must match [a-z0-9_-]{1,63}, '*' or a final '>'"),
        }
    }
    None
}

/// `value` shared, or the [`ValidationError::Topic`] that `problem` finds in it.
fn checked(
    value: &str,
    problem: fn(&str) -> Option<&'static str>,
) -> Result<Arc<str>, ValidationError> {
    match problem(value) {
        None => Ok(Arc::from(value)),
        Some(reason) => Err(ValidationError::Topic {
            value: value.to_owned(),
            reason,
        }),
    }
}

/// A topic messages are published on: dot-separated tokens `[a-z0-9_-]{1,63}`, at most 255
/// bytes (`orders.eu.created`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Parses and validates `value`.
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        checked(value, topic_problem).map(Self)
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subscription pattern: a topic whose tokens may also be `*` (one token) or, last, `>`
/// (one or more tokens). `orders.*` matches `orders.created`, not `orders.eu.created`;
/// `orders.>` matches both, and not `orders`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPattern(Arc<str>);

impl TopicPattern {
    /// Parses and validates `value`.
    pub fn new(value: &str) -> Result<Self, ValidationError> {
        checked(value, pattern_problem).map(Self)
    }

    /// The pattern as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `topic` matches this pattern.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut topic_tokens = topic.as_str().split('.');
        for token in self.0.split('.') {
            match (token, topic_tokens.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (literal, Some(t)) if literal == t => {}
                _ => return false,
            }
        }
        topic_tokens.next().is_none()
    }
}

text_type!(Topic);
text_type!(TopicPattern);

/// One subscription: messages published on a topic matching `pattern` go to one instance
/// of `group` (competing consumers). Without a group, the group is the subscribing
/// instance's service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Topic pattern (`orders.*.created`, `orders.>`).
    #[schema(value_type = String, example = "orders.*.created")]
    pub pattern: TopicPattern,
    /// Consumer group; default: the instance's service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "billing")]
    pub group: Option<ServiceName>,
}

impl Subscription {
    /// A subscription of `pattern` for the subscriber's own service.
    pub fn new(pattern: TopicPattern) -> Self {
        Self {
            pattern,
            group: None,
        }
    }

    /// Parses the command-line form `PATTERN` or `PATTERN:GROUP` (`orders.>:billing`).
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let (pattern, group) = match text.split_once(':') {
            Some((pattern, group)) => (pattern, Some(ServiceName::new(group)?)),
            None => (text, None),
        };
        Ok(Self {
            pattern: TopicPattern::new(pattern)?,
            group,
        })
    }

    /// The consumer group of this subscription made by an instance of `service`.
    pub fn group_of<'a>(&'a self, service: &'a ServiceName) -> &'a ServiceName {
        self.group.as_ref().unwrap_or(service)
    }
}

/// The subscriptions of one instance: at most [`MAX_SUBSCRIPTIONS`], duplicates dropped
/// (first kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Subscription>")]
pub struct Subscriptions(Box<[Subscription]>);

impl Subscriptions {
    /// Validates a list of subscriptions (each one is valid by its type; this bounds them).
    pub fn new(list: Vec<Subscription>) -> Result<Self, ValidationError> {
        if list.len() > MAX_SUBSCRIPTIONS {
            return Err(ValidationError::Subscriptions(format!(
                "more than {MAX_SUBSCRIPTIONS} subscriptions"
            )));
        }
        let mut out: Vec<Subscription> = Vec::with_capacity(list.len());
        for sub in list {
            if !out.contains(&sub) {
                out.push(sub);
            }
        }
        Ok(Self(out.into_boxed_slice()))
    }

    /// The subscriptions, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl TryFrom<Vec<Subscription>> for Subscriptions {
    type Error = ValidationError;
    fn try_from(list: Vec<Subscription>) -> Result<Self, Self::Error> {
        Self::new(list)
    }
}

/// `GET /v1/topics/{topic}/subscribers` response: the consumer groups a message published
/// on `topic` goes to, each with its live subscribed instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicSubscribers {
    /// The topic asked about.
    #[schema(value_type = String, example = "orders.eu.created")]
    pub topic: Topic,
    /// Change index of the last change to any subscription (use it as `index` of a
    /// blocking query).
    pub index: u64,
    /// Groups with at least one live instance subscribed to a matching pattern, sorted by
    /// name.
    pub groups: Vec<GroupSubscribers>,
}

/// One consumer group subscribed to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupSubscribers {
    /// The group.
    #[schema(value_type = String, example = "billing")]
    pub group: ServiceName,
    /// Its live instances subscribed to a matching pattern (each once, however many of its
    /// patterns match), sorted by service then instance id.
    #[schema(value_type = Vec<crate::Record>)]
    pub instances: Vec<Arc<crate::Record>>,
}

/// `GET /v1/topics` response: every pattern with live subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicsResponse {
    /// Change index of the last change to any subscription.
    pub index: u64,
    /// Patterns sorted by text.
    pub patterns: Vec<PatternSummary>,
}

/// One subscribed pattern and its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatternSummary {
    /// The pattern.
    #[schema(value_type = String, example = "orders.*.created")]
    pub pattern: TopicPattern,
    /// Groups subscribed to it, sorted by name.
    pub groups: Vec<GroupCount>,
}

/// A group and how many live instances subscribe for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupCount {
    /// The group.
    #[schema(value_type = String, example = "billing")]
    pub group: ServiceName,
    /// Live instances subscribed for it.
    pub instances: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(pattern: &str, topic: &str) -> bool {
        TopicPattern::new(pattern)
            .unwrap()
            .matches(&Topic::new(topic).unwrap())
    }

    #[test]
    fn a_star_matches_exactly_one_token() {
        assert!(matches("orders.*", "orders.created"));
        assert!(!matches("orders.*", "orders.eu.created"));
        assert!(!matches("orders.*", "orders"));
        assert!(matches("orders.*.created", "orders.eu.created"));
        assert!(!matches("orders.*.created", "orders.eu.deleted"));
    }

    #[test]
    fn a_final_gt_matches_one_or_more_tokens() {
        assert!(matches("orders.>", "orders.created"));
        assert!(matches("orders.>", "orders.eu.created"));
        assert!(!matches("orders.>", "orders"));
        assert!(!matches("orders.>", "invoices.created"));
        assert!(matches(">", "anything.at.all"));
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(matches("orders.created", "orders.created"));
        assert!(!matches("orders.created", "orders.created.eu"));
        assert!(!matches("orders.created.eu", "orders.created"));
    }

    #[test]
    fn malformed_topics_and_patterns_are_refused_with_the_topic_code() {
        for bad in ["", "a..b", ".a", "a.", "Orders", "a b", "a.*", "a.>"] {
            let err = Topic::new(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_topic", "{bad:?}");
        }
        for bad in ["", "a.>.b", "a..b", "a.**", "a.>x", "A.*", &"a".repeat(256)] {
            let err = TopicPattern::new(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_topic", "{bad:?}");
        }
    }

    #[test]
    fn subscriptions_are_bounded_and_deduplicated() {
        let sub = Subscription::new(TopicPattern::new("a.*").unwrap());
        let subs = Subscriptions::new(vec![sub.clone(), sub.clone()]).unwrap();
        assert_eq!(subs.len(), 1);
        let err = Subscriptions::new(vec![sub; MAX_SUBSCRIPTIONS + 1]).unwrap_err();
        assert_eq!(err.code(), "invalid_subscriptions");
        let json = serde_json::json!([{"pattern": "a.>", "group": "Bad"}]);
        assert!(serde_json::from_value::<Subscriptions>(json).is_err());
    }

    /// A reference matcher over token lists, written independently of `matches`.
    fn reference(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&">", [])), Some(_)) => true,
            (Some((&"*", p)), Some((_, t))) => reference(p, t),
            (Some((lit, p)), Some((tok, t))) => lit == tok && reference(p, t),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_token_by_token_reference(
            pattern in prop::collection::vec(prop_oneof!["[ab]", Just("*".to_owned())], 1..5),
            gt in any::<bool>(),
            topic in prop::collection::vec("[ab]", 1..6),
        ) {
            let mut pattern = pattern;
            if gt {
                pattern.push(">".to_owned());
            }
            let p: Vec<&str> = pattern.iter().map(String::as_str).collect();
            let t: Vec<&str> = topic.iter().map(String::as_str).collect();
            let parsed = TopicPattern::new(&p.join(".")).unwrap();
            let expected = reference(&p, &t);
            prop_assert_eq!(parsed.matches(&Topic::new(&t.join(".")).unwrap()), expected);
        }

        #[test]
        fn every_valid_topic_is_a_pattern_matching_itself(topic in "[a-z0-9_-]{1,8}(\\.[a-z0-9_-]{1,8}){0,4}") {
            let parsed = Topic::new(&topic).unwrap();
            prop_assert!(TopicPattern::new(&topic).unwrap().matches(&parsed));
        }
    }
}
