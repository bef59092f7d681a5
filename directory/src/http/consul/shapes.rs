//! Records rendered in Consul's shapes ([`super::types`]), I/O-free: the caller passes the
//! owning node's address and the time.

use std::collections::BTreeMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::consul_index;
use super::filter::Subject;
use super::mapping;
use super::types::{
    AgentService, CatalogService, DATACENTER, HealthCheck, HealthEntry, Node, Weights,
};
use crate::registry::Record;
use crate::registry::{has_check, status_at};

/// The node meta every node carries (what a default Consul agent has).
pub fn node_meta() -> BTreeMap<String, String> {
    BTreeMap::from([("consul-network-segment".to_owned(), String::new())])
}

/// A UUID-shaped id derived from the node name, stable across restarts.
pub fn node_id(name: &str) -> String {
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hash[..8],
        &hash[8..12],
        &hash[12..16],
        &hash[16..20],
        &hash[20..32]
    )
}

/// A node in Consul's shape.
pub fn node(name: &str, address: &str, index: u64) -> Node {
    Node {
        id: node_id(name),
        node: name.to_owned(),
        address: address.to_owned(),
        datacenter: DATACENTER.to_owned(),
        tagged_addresses: BTreeMap::new(),
        meta: node_meta(),
        create_index: index,
        modify_index: index,
    }
}

/// One instance with everything a filter or a shape needs, computed once.
pub struct Instance<'a> {
    /// The record.
    pub record: &'a Record,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its meta without the reserved keys.
    pub meta: BTreeMap<String, String>,
    /// The owning node's address.
    pub node_address: String,
}

impl<'a> Instance<'a> {
    /// Prepares `record`, owned by a node at `node_address`.
    pub fn new(record: &'a Record, node_address: String) -> Self {
        Self {
            record,
            tags: record.tags.to_vec(),
            meta: mapping::user_meta(record),
            node_address,
        }
    }

    /// What a filter looks at.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            id: self.record.instance.as_str(),
            name: self.record.service.as_str(),
            tags: &self.tags,
            address: self.record.address.host(),
            port: self.record.address.port(),
            meta: &self.meta,
            node: self.record.owner.as_str(),
            node_address: &self.node_address,
        }
    }

    /// The `Service` of a health entry.
    pub fn agent_service(&self) -> AgentService {
        let r = self.record;
        AgentService {
            id: r.instance.to_string(),
            service: r.service.to_string(),
            tags: self.tags.clone(),
            address: r.address.host().to_owned(),
            meta: self.meta.clone(),
            port: r.address.port(),
            weights: Weights::default(),
            enable_tag_override: false,
            create_index: consul_index(r.index),
            modify_index: consul_index(r.index),
        }
    }

    /// The service check at `now`.
    pub fn check(&self, now: SystemTime) -> HealthCheck {
        let r = self.record;
        let (status, output) = status_at(r, now);
        HealthCheck {
            node: r.owner.to_string(),
            check_id: format!("service:{}", r.instance),
            name: format!("Service '{}' check", r.service),
            status: status.as_str().to_owned(),
            notes: String::new(),
            output: output.to_owned(),
            service_id: r.instance.to_string(),
            service_name: r.service.to_string(),
            service_tags: self.tags.clone(),
            kind: if has_check(r) { "ttl" } else { "lease" }.to_owned(),
            create_index: consul_index(r.index),
            modify_index: consul_index(r.index),
        }
    }

    /// The entry of `health/service`.
    pub fn health_entry(&self, now: SystemTime) -> HealthEntry {
        HealthEntry {
            node: node(
                self.record.owner.as_str(),
                &self.node_address,
                self.record.index,
            ),
            service: self.agent_service(),
            checks: vec![self.check(now)],
        }
    }

    /// The entry of `catalog/service`.
    pub fn catalog_service(&self) -> CatalogService {
        let r = self.record;
        CatalogService {
            id: node_id(r.owner.as_str()),
            node: r.owner.to_string(),
            address: self.node_address.clone(),
            datacenter: DATACENTER.to_owned(),
            tagged_addresses: BTreeMap::new(),
            node_meta: node_meta(),
            service_id: r.instance.to_string(),
            service_name: r.service.to_string(),
            service_tags: self.tags.clone(),
            service_address: r.address.host().to_owned(),
            service_port: r.address.port(),
            service_meta: self.meta.clone(),
            service_weights: Weights::default(),
            service_enable_tag_override: false,
            create_index: consul_index(r.index),
            modify_index: consul_index(r.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_uuid_shaped_and_stable() {
        let id = node_id("directory-1");
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(id, node_id("directory-1"));
        assert_ne!(id, node_id("directory-2"));
    }
}
