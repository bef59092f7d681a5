//! The topic index: which consumer groups (and which of their live instances) subscribe to
//! a topic. Kept up to date by [`Registry::emit`](super::Registry), the one place every
//! user-visible change goes through (local writes, expiry, merges, restores), so it can
//! never disagree with the records.
//!
//! A lookup matches the topic against each distinct subscribed pattern once: its cost is
//! the number of distinct patterns in the cluster (each at most 255 bytes), not the number
//! of instances.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use directory_api::{
    GroupCount, GroupSubscribers, PatternSummary, Topic, TopicSubscribers, TopicsResponse,
};
use tokio::time::Instant;

use super::Registry;
use crate::registry::{InstanceId, Record, ServiceName, TopicPattern};

type Key = (ServiceName, InstanceId);

/// Subscriptions of the live instances, by pattern and group. I/O-free.
#[derive(Debug, Default)]
pub(super) struct TopicIndex {
    /// Pattern → group → subscribed instances.
    patterns: BTreeMap<TopicPattern, BTreeMap<ServiceName, BTreeSet<Key>>>,
    /// The record of every live instance with at least one subscription.
    records: HashMap<Key, Arc<Record>>,
}

impl TopicIndex {
    /// Applies a change of `key` (`None`: removed). Returns whether the index changed.
    pub(super) fn handle_change(&mut self, key: Key, record: Option<&Arc<Record>>) -> bool {
        let removed = self.remove(&key);
        let Some(record) = record.filter(|r| !r.subscriptions.is_empty()) else {
            return removed;
        };
        for sub in record.subscriptions.iter() {
            let group = sub.group_of(&record.service).clone();
            self.patterns
                .entry(sub.pattern.clone())
                .or_default()
                .entry(group)
                .or_default()
                .insert(key.clone());
        }
        self.records.insert(key, record.clone());
        true
    }

    fn remove(&mut self, key: &Key) -> bool {
        let Some(old) = self.records.remove(key) else {
            return false;
        };
        for sub in old.subscriptions.iter() {
            let Some(groups) = self.patterns.get_mut(&sub.pattern) else {
                continue;
            };
            let group = sub.group_of(&old.service);
            if let Some(members) = groups.get_mut(group) {
                members.remove(key);
                if members.is_empty() {
                    groups.remove(group);
                }
            }
            if groups.is_empty() {
                self.patterns.remove(&sub.pattern);
            }
        }
        true
    }

    /// The groups subscribed to `topic`, each with its instances (each instance once).
    pub(super) fn subscribers(&self, topic: &Topic) -> Vec<GroupSubscribers> {
        let mut groups: BTreeMap<&ServiceName, BTreeSet<&Key>> = BTreeMap::new();
        for (pattern, by_group) in &self.patterns {
            if !pattern.matches(topic) {
                continue;
            }
            for (group, members) in by_group {
                groups.entry(group).or_default().extend(members);
            }
        }
        groups
            .into_iter()
            .map(|(group, keys)| GroupSubscribers {
                group: group.clone(),
                instances: keys
                    .into_iter()
                    .filter_map(|k| self.records.get(k).cloned())
                    .collect(),
            })
            .collect()
    }

    /// Every pattern with its groups and their instance counts.
    pub(super) fn summary(&self) -> Vec<PatternSummary> {
        self.patterns
            .iter()
            .map(|(pattern, groups)| PatternSummary {
                pattern: pattern.clone(),
                groups: groups
                    .iter()
                    .map(|(group, members)| GroupCount {
                        group: group.clone(),
                        instances: members.len(),
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Registry {
    /// The groups (and their live instances) a message published on `topic` goes to, and
    /// the topic index's change index.
    pub fn topic_subscribers(&self, topic: &Topic) -> TopicSubscribers {
        let groups = self.inner.topics.lock().subscribers(topic);
        TopicSubscribers {
            topic: topic.clone(),
            index: *self.inner.topics_changed.borrow(),
            groups,
        }
    }

    /// Every subscribed pattern, its groups and their instance counts.
    pub fn topics(&self) -> TopicsResponse {
        let patterns = self.inner.topics.lock().summary();
        TopicsResponse {
            index: *self.inner.topics_changed.borrow(),
            patterns,
        }
    }

    /// Waits until a subscription changes after index `after` or `deadline` passes;
    /// returns the topic index's change index at that point.
    pub async fn wait_for_topic_change(&self, after: u64, deadline: Instant) -> u64 {
        let mut rx = self.inner.topics_changed.subscribe();
        // The sender lives as long as the registry, which `self` keeps alive.
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|i| *i > after)).await;
        *rx.borrow()
    }

    /// Feeds a user-visible change to the topic index (called with the sequencing lock
    /// held, so changes arrive in index order).
    pub(super) fn index_topics(&self, key: Key, record: Option<&Arc<Record>>, index: u64) {
        if self.inner.topics.lock().handle_change(key, record) {
            self.inner.topics_changed.send_replace(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Address, Subscription, Subscriptions};
    use std::time::SystemTime;

    fn record(service: &str, instance: &str, subs: &[(&str, Option<&str>)]) -> Arc<Record> {
        let list = subs
            .iter()
            .map(|(p, g)| Subscription {
                pattern: p.parse().unwrap(),
                group: g.map(|g| g.parse().unwrap()),
            })
            .collect();
        Arc::new(Record {
            service: service.parse().unwrap(),
            instance: instance.parse().unwrap(),
            address: Address::new("127.0.0.1:1").unwrap(),
            tags: Default::default(),
            meta: Default::default(),
            ttl: Default::default(),
            fingerprint: None,
            subscriptions: Subscriptions::new(list).unwrap(),
            owner: "n1".parse().unwrap(),
            index: 1,
            registered_at: SystemTime::UNIX_EPOCH,
            lease_expires_at: SystemTime::UNIX_EPOCH,
        })
    }

    fn key(r: &Record) -> Key {
        (r.service.clone(), r.instance.clone())
    }

    fn groups(index: &TopicIndex, topic: &str) -> Vec<(String, Vec<String>)> {
        index
            .subscribers(&topic.parse().unwrap())
            .into_iter()
            .map(|g| {
                let names = g.instances.iter().map(|r| r.instance.to_string()).collect();
                (g.group.to_string(), names)
            })
            .collect()
    }

    #[test]
    fn a_topic_reaches_each_matching_group_with_each_instance_once() {
        let mut index = TopicIndex::default();
        let b1 = record("billing", "b1", &[("orders.*", None), ("orders.>", None)]);
        let b2 = record("billing", "b2", &[("orders.created", None)]);
        let a1 = record("audit", "a1", &[("orders.>", Some("auditors"))]);
        for r in [&b1, &b2, &a1] {
            assert!(index.handle_change(key(r), Some(r)));
        }
        assert_eq!(
            groups(&index, "orders.created"),
            vec![
                ("auditors".into(), vec!["a1".into()]),
                ("billing".into(), vec!["b1".into(), "b2".into()]),
            ]
        );
        assert_eq!(
            groups(&index, "orders.eu.created"),
            vec![
                ("auditors".into(), vec!["a1".into()]),
                ("billing".into(), vec!["b1".into()]),
            ]
        );
        assert!(groups(&index, "invoices.created").is_empty());
    }

    #[test]
    fn a_removed_or_resubscribed_instance_leaves_no_trace() {
        let mut index = TopicIndex::default();
        let b1 = record("billing", "b1", &[("orders.*", None)]);
        index.handle_change(key(&b1), Some(&b1));
        let moved = record("billing", "b1", &[("invoices.*", None)]);
        assert!(index.handle_change(key(&moved), Some(&moved)));
        assert!(groups(&index, "orders.created").is_empty());
        assert_eq!(index.summary().len(), 1);
        assert!(index.handle_change(key(&moved), None));
        assert!(index.summary().is_empty() && index.records.is_empty());
        let plain = record("billing", "b2", &[]);
        assert!(!index.handle_change(key(&plain), Some(&plain)));
    }
}
