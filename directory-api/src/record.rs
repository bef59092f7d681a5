//! [`Registration`] (what a client registers) and [`Record`] (one live instance as the
//! directory returns it).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{
    Address, Fingerprint, InstanceId, Meta, NodeName, ServiceName, Subscriptions, Tags, Ttl,
};

/// What a client registers: everything but the key (service, instance) and the fields the
/// server assigns. Serializes to the body of `PUT /v1/services/{service}/instances/{instance}`
/// (see [`RegisterBody`](crate::RegisterBody), the form the server parses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// Where the instance can be reached.
    pub address: Address,
    /// Free-form labels, filterable with `?tag=`.
    pub tags: Tags,
    /// Free-form string pairs, filterable with `?meta=key:value`.
    pub meta: Meta,
    /// Lease length: the instance disappears unless renewed within it.
    pub ttl: Ttl,
    /// SHA-256 of the instance's certificate SubjectPublicKeyInfo, for pinned peer identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Topic patterns the instance subscribes to, each for a consumer group.
    #[serde(skip_serializing_if = "Subscriptions::is_empty")]
    pub subscriptions: Subscriptions,
}

impl Registration {
    /// A registration with no tags, no meta, the default TTL and no fingerprint.
    pub fn new(address: Address) -> Self {
        Self {
            address,
            tags: Tags::default(),
            meta: Meta::default(),
            ttl: Ttl::default(),
            fingerprint: None,
            subscriptions: Subscriptions::default(),
        }
    }
}

/// One live instance as clients see it (the JSON record of the HTTP API). Newer servers may
/// add fields: clients ignore the ones they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Service the instance belongs to.
    #[schema(value_type = String, example = "orders")]
    pub service: ServiceName,
    /// Instance id, unique within the service.
    #[schema(value_type = String, example = "orders-1")]
    pub instance: InstanceId,
    /// `host:port` where the instance listens.
    #[schema(value_type = String, example = "127.0.0.1:7000")]
    pub address: Address,
    /// Labels.
    #[schema(value_type = Vec<String>, example = json!(["v2"]))]
    pub tags: Tags,
    /// String pairs.
    #[schema(value_type = HashMap<String, String>, example = json!({"zone": "a"}))]
    pub meta: Meta,
    /// Lease length (humantime, e.g. `10s`).
    #[schema(value_type = String, example = "10s")]
    pub ttl: Ttl,
    /// SHA-256 of the instance certificate's SubjectPublicKeyInfo DER (64 lowercase hex), if
    /// the instance registered one.
    #[schema(value_type = Option<String>)]
    pub fingerprint: Option<Fingerprint>,
    /// Topic patterns the instance subscribes to, each for a consumer group (its service
    /// when the group is absent). Absent when there is none.
    #[serde(default, skip_serializing_if = "Subscriptions::is_empty")]
    #[schema(value_type = Vec<crate::Subscription>)]
    pub subscriptions: Subscriptions,
    /// Directory node that last accepted a register or heartbeat for this instance.
    #[schema(value_type = String, example = "directory-1")]
    pub owner: NodeName,
    /// Change index of the last user-visible change to this record.
    pub index: u64,
    /// When the current registration was made (RFC 3339 UTC; kept across heartbeats and updates).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: SystemTime,
    /// When the lease runs out unless renewed (RFC 3339 UTC, this node's wall clock).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: SystemTime,
}

impl Record {
    /// Whether the user-visible content equals `reg`: a renewal that changes nothing here is
    /// not a change (no new index, no watch event).
    pub fn same_content(&self, reg: &Registration) -> bool {
        self.address == reg.address
            && self.tags == reg.tags
            && self.meta == reg.meta
            && self.ttl == reg.ttl
            && self.fingerprint == reg.fingerprint
            && self.subscriptions == reg.subscriptions
    }

    /// The registration this record was made from.
    pub fn registration(&self) -> Registration {
        Registration {
            address: self.address.clone(),
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            ttl: self.ttl,
            fingerprint: self.fingerprint,
            subscriptions: self.subscriptions.clone(),
        }
    }
}

/// RFC 3339 UTC timestamps with millisecond precision.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegisterBody;

    #[test]
    fn a_registration_serializes_to_the_register_body_and_back() {
        let mut reg = Registration::new(Address::new("127.0.0.1:1").unwrap());
        reg.tags = Tags::new(vec!["v2".into()]).unwrap();
        reg.ttl = Ttl::parse("10s").unwrap();
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"address": "127.0.0.1:1", "tags": ["v2"], "meta": {}, "ttl": "10s"})
        );
        reg.fingerprint = Some(Fingerprint::from_bytes([0xab; 32]));
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["fingerprint"], "ab".repeat(32));
        let body: RegisterBody = serde_json::from_value(json).unwrap();
        assert_eq!(body.into_registration().unwrap(), reg);
    }

    #[test]
    fn a_record_from_a_newer_server_with_more_fields_still_reads() {
        let json = serde_json::json!({
            "service": "s", "instance": "i", "address": "h:1", "tags": [], "meta": {},
            "ttl": "10s", "fingerprint": null, "owner": "n", "index": 3,
            "registered_at": "2026-01-01T00:00:00.000Z",
            "lease_expires_at": "2026-01-01T00:00:10.000Z",
            "added_later": {"anything": true}
        });
        let record: Record = serde_json::from_value(json).unwrap();
        assert_eq!((record.index, record.address.port()), (3, 1));
    }
}
