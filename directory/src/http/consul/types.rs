//! Consul's JSON shapes, as far as the supported subset uses them. Field names follow
//! Consul's API (PascalCase, `ID`); `docs/consul-compat.md` maps each onto the directory's
//! records.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The one datacenter a directory cluster presents itself as.
pub const DATACENTER: &str = "dc1";

/// `Weights` of a service: the directory has no weights, so Consul's default.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while passing.
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// A node: a directory node owning instances (`Node` of health entries, `catalog/nodes`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// A UUID derived from the node name (stable across restarts).
    #[serde(rename = "ID")]
    pub id: String,
    /// The directory node's name.
    pub node: String,
    /// The node's address (see `docs/consul-compat.md`).
    pub address: String,
    /// Always [`DATACENTER`].
    pub datacenter: String,
    /// Always empty.
    pub tagged_addresses: BTreeMap<String, String>,
    /// The fixed node meta every node carries (`consul-network-segment: ""`).
    pub meta: BTreeMap<String, String>,
    /// The registry index when asked (nodes carry no index of their own).
    pub create_index: u64,
    /// Same as `CreateIndex`.
    pub modify_index: u64,
}

/// A service instance in an agent/health shape (`Service` of a health entry).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    /// The instance id.
    #[serde(rename = "ID")]
    pub id: String,
    /// The service name.
    pub service: String,
    /// The instance's tags.
    pub tags: Vec<String>,
    /// The host part of the instance's address.
    pub address: String,
    /// The instance's meta, without the reserved `consul-check-*` keys.
    pub meta: BTreeMap<String, String>,
    /// The port part of the instance's address.
    pub port: u16,
    /// Always Consul's default weights.
    pub weights: Weights,
    /// Always false.
    pub enable_tag_override: bool,
    /// The record's change index.
    pub create_index: u64,
    /// The record's change index.
    pub modify_index: u64,
}

/// A health check: the service check an instance's lease stands for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    /// The owning node.
    pub node: String,
    /// `service:<id>`.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// `Service '<name>' check`.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Always empty.
    pub notes: String,
    /// Why the status is what it is.
    pub output: String,
    /// The instance id.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The service name.
    pub service_name: String,
    /// The instance's tags.
    pub service_tags: Vec<String>,
    /// `ttl` for a TTL check, `lease` for an instance registered without a check.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The record's change index.
    pub create_index: u64,
    /// The record's change index.
    pub modify_index: u64,
}

/// One entry of `GET /v1/health/service/:name`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    /// The node owning the instance.
    pub node: Node,
    /// The instance.
    pub service: AgentService,
    /// Its service check.
    pub checks: Vec<HealthCheck>,
}

/// One entry of `GET /v1/catalog/service/:name`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogService {
    /// The owning node's id.
    #[serde(rename = "ID")]
    pub id: String,
    /// The owning node's name.
    pub node: String,
    /// The owning node's address.
    pub address: String,
    /// Always [`DATACENTER`].
    pub datacenter: String,
    /// Always empty.
    pub tagged_addresses: BTreeMap<String, String>,
    /// The owning node's meta.
    pub node_meta: BTreeMap<String, String>,
    /// The instance id.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The service name.
    pub service_name: String,
    /// The instance's tags.
    pub service_tags: Vec<String>,
    /// The host part of the instance's address.
    pub service_address: String,
    /// The port part of the instance's address.
    pub service_port: u16,
    /// The instance's meta, without the reserved keys.
    pub service_meta: BTreeMap<String, String>,
    /// Always Consul's default weights.
    pub service_weights: Weights,
    /// Always false.
    pub service_enable_tag_override: bool,
    /// The record's change index.
    pub create_index: u64,
    /// The record's change index.
    pub modify_index: u64,
}

/// `GET /v1/agent/self`, the fields common clients read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSelf {
    /// The agent's configuration.
    pub config: AgentConfig,
    /// The agent as a cluster member.
    pub member: AgentMember,
    /// The node's meta.
    pub meta: BTreeMap<String, String>,
}

/// `Config` of `agent/self`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentConfig {
    /// Always [`DATACENTER`].
    pub datacenter: String,
    /// The node's name.
    pub node_name: String,
    /// The node's id.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Every directory node serves reads and writes.
    pub server: bool,
    /// The directory's version (not a Consul version).
    pub version: String,
}

/// `Member` of `agent/self`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentMember {
    /// The node's name.
    pub name: String,
    /// The node's address.
    pub addr: String,
    /// The node's HTTP port.
    pub port: u16,
    /// Serf status: 1 (alive).
    pub status: u8,
    /// Always empty.
    pub tags: BTreeMap<String, String>,
}

/// The body of `PUT /v1/agent/service/register`, after its keys were folded to lower case
/// without underscores (Consul accepts `Name`, `name` and `de_register...` alike). Fields
/// that are accepted and ignored are `IgnoredAny`; any other field is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefinition {
    /// Service name (required).
    pub name: Option<String>,
    /// Instance id; defaults to the name.
    pub id: Option<String>,
    /// Host; defaults to the node's address.
    pub address: Option<String>,
    /// Port (1-65535; required).
    pub port: Option<u32>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Meta.
    pub meta: Option<BTreeMap<String, String>>,
    /// One check.
    pub check: Option<CheckDefinition>,
    /// Checks (at most one here).
    pub checks: Option<Vec<CheckDefinition>>,
    /// Ignored: the directory has no weights.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub weights: Option<IgnoredAny>,
    /// Ignored.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub enabletagoverride: Option<IgnoredAny>,
    /// Ignored.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub taggedaddresses: Option<IgnoredAny>,
    /// Only an empty kind (a plain service) is supported.
    pub kind: Option<String>,
}

/// One check of a registration (keys folded like [`ServiceDefinition`]'s).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDefinition {
    /// The TTL: the check turns critical unless passed within it (required).
    pub ttl: Option<String>,
    /// Deregister the instance after the check has been critical this long (at least 1m).
    pub deregistercriticalserviceafter: Option<String>,
    /// Initial status; Consul's default for a TTL check is `critical`.
    pub status: Option<String>,
    /// Must be `service:<id>` when given.
    pub checkid: Option<String>,
    /// Same as `checkid`.
    pub id: Option<String>,
    /// Ignored.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub name: Option<IgnoredAny>,
    /// Ignored.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub notes: Option<IgnoredAny>,
    /// Ignored: the check's output is not kept.
    #[allow(dead_code)] // accepted so clients that send it work; never read
    pub output: Option<IgnoredAny>,
}
