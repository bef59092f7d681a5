//! Publishing: one copy of a message to each consumer group subscribed to the topic at
//! publish time, each copy an ordinary acknowledged message to one instance of its group
//! (see [`crate::topic`] for how a group becomes a destination of the delivery core).

use bytes::Bytes;
use directory_api::{ServiceName, Topic};

use super::{Peer, SendOptions};
use crate::error::{PublishError, SendError};
use crate::topic::group_key;

/// Options of one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Options of each group's copy: ordering key (per-key order holds within each group
    /// for one topic), deadline, ack timeout, attempts.
    pub send: SendOptions,
    /// Fail at once with [`PublishError::NoSubscribers`] when no group subscribes to the
    /// topic, instead of succeeding with no copy. Default `false`.
    pub no_subscribers: bool,
}

impl PublishOptions {
    /// Options with an ordering key.
    pub fn ordered(key: impl Into<Bytes>) -> Self {
        Self {
            send: SendOptions::ordered(key),
            ..Self::default()
        }
    }

    /// Fails at once when no group subscribes.
    pub fn no_subscribers(mut self) -> Self {
        self.no_subscribers = true;
        self
    }
}

/// How one group's copy of a published message ended.
#[derive(Debug)]
pub struct GroupOutcome {
    /// The consumer group.
    pub group: String,
    /// Acked by one of its instances, or why not.
    pub result: Result<(), SendError>,
}

/// Outcome of a publish: one entry per group subscribed at publish time, sorted by group.
#[derive(Debug)]
pub struct PublishOutcome {
    /// The topic published on.
    pub topic: String,
    /// Each group's outcome.
    pub groups: Vec<GroupOutcome>,
}

impl PublishOutcome {
    /// Whether every group acked its copy (true when there was no group).
    pub fn all_acked(&self) -> bool {
        self.groups.iter().all(|g| g.result.is_ok())
    }
}

impl Peer {
    /// Publishes `payload` on `topic`: one copy to each group subscribed at publish time,
    /// each to one healthy instance of its group; resolves when every copy is resolved.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<PublishOutcome, PublishError> {
        self.publish_with(topic, payload, PublishOptions::default())
            .await
    }

    /// Publishes with options (ordering key, deadline, no-subscribers).
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        opts: PublishOptions,
    ) -> Result<PublishOutcome, PublishError> {
        let topic = Topic::new(topic).map_err(PublishError::InvalidTopic)?;
        let groups = self.subscribed_groups(&topic).await?;
        if groups.is_empty() && opts.no_subscribers {
            return Err(PublishError::NoSubscribers(topic.to_string()));
        }
        let payload = payload.into();
        let topic_ref = &topic;
        let copies = groups.iter().map(|group| {
            let (payload, send) = (payload.clone(), opts.send.clone());
            async move {
                let key = group_key(topic_ref, group);
                let result = self.submit(&key, None, payload, send, false).await;
                GroupOutcome {
                    group: group.to_string(),
                    result: result.map(drop),
                }
            }
        });
        let groups = futures_util::future::join_all(copies).await;
        Ok(PublishOutcome {
            topic: topic.to_string(),
            groups,
        })
    }

    /// The groups subscribed to `topic`, from the directory (cached, kept fresh by a
    /// blocking watch after the first publish on the topic).
    async fn subscribed_groups(&self, topic: &Topic) -> Result<Vec<ServiceName>, PublishError> {
        let Some((discovery, _)) = &self.inner.discovery else {
            return Err(PublishError::NoDirectory);
        };
        discovery
            .topic_groups(topic, &self.inner.inputs)
            .await
            .map_err(PublishError::Directory)
    }
}
