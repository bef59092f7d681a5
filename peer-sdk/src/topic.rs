//! Publish/subscribe destinations. The delivery core addresses a destination by an opaque
//! string key; a service's key is its name, and one consumer group's subscribers of a topic
//! have the key `topic/{topic}/{group}`. Service names, topics and groups never contain `/`,
//! so the two kinds cannot collide, and a durable message keeps its destination across
//! restarts as it keeps a service name.

use directory_api::{ServiceName, Topic, ValidationError};

const PREFIX: &str = "topic/";

/// What a destination key of the delivery core stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The instances of a service.
    Service(ServiceName),
    /// The groups subscribed to `topic` (what a publisher fans out to).
    Topic(Topic),
    /// The instances of `group` subscribed to a pattern matching `topic`.
    Group {
        /// The topic published on.
        topic: Topic,
        /// The consumer group.
        group: ServiceName,
    },
}

impl Destination {
    /// Parses a destination key.
    pub(crate) fn parse(key: &str) -> Result<Self, ValidationError> {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            return Ok(Self::Service(ServiceName::new(key)?));
        };
        let Some((topic, group)) = rest.split_once('/') else {
            return Ok(Self::Topic(Topic::new(rest)?));
        };
        Ok(Self::Group {
            topic: Topic::new(topic)?,
            group: ServiceName::new(group)?,
        })
    }
}

/// The destination key of `group`'s subscribers of `topic`.
pub(crate) fn group_key(topic: &Topic, group: &ServiceName) -> String {
    format!("{PREFIX}{topic}/{group}")
}

/// The key under which a publisher follows the groups subscribed to `topic`.
pub(crate) fn topic_key(topic: &Topic) -> String {
    format!("{PREFIX}{topic}")
}

/// Whether `key` is a [`topic_key`] (not a service or a group destination).
pub(crate) fn is_topic_key(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .is_some_and(|rest| !rest.contains('/'))
}

/// The topic a destination key publishes on, if it is a group destination.
pub(crate) fn topic_of(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.split_once('/').map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_round_trip_and_service_names_stay_services() {
        let topic: Topic = "orders.eu.created".parse().unwrap();
        let group: ServiceName = "billing".parse().unwrap();
        let key = group_key(&topic, &group);
        assert_eq!(
            Destination::parse(&key).unwrap(),
            Destination::Group {
                topic,
                group: group.clone()
            }
        );
        assert_eq!(topic_of(&key), Some("orders.eu.created"));
        assert_eq!(
            Destination::parse("billing").unwrap(),
            Destination::Service(group)
        );
        assert_eq!(topic_of("billing"), None);
        let topic = Destination::parse("topic/orders").unwrap();
        assert_eq!(topic, Destination::Topic("orders".parse().unwrap()));
        assert!(is_topic_key("topic/orders") && !is_topic_key(&key));
        assert!(Destination::parse("topic/Orders/billing").is_err());
    }
}
