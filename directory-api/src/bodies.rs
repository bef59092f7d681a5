//! Request and response bodies of the HTTP API, one type per JSON shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::{
    Address, Fingerprint, Meta, Record, Registration, ServiceName, Staleness, Subscription,
    Subscriptions, Tags, Ttl,
};

/// Response header of `GET /v1/services/{service}` carrying the service's change index.
pub const INDEX_HEADER: &str = "x-directory-index";

/// Body of a registration. Unknown fields are rejected.
///
/// Each field is checked on its own, so an invalid one gets its own error code
/// (`invalid_address`, `invalid_ttl`, ...). Rust clients send a `Registration`, which
/// serializes to this shape.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// `host:port`: IPv4, bracketed IPv6 (`[::1]:7000`) or a DNS name, port 1-65535. The
    /// schema's pattern spells out the IPv4 and DNS-name forms; IPv6 is accepted as well.
    #[schema(example = "127.0.0.1:7000")]
    pub address: String,
    /// Up to 64 tags of at most 1 KiB each.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Up to 64 pairs; keys `[A-Za-z0-9._-]{1,128}`, values at most 1 KiB.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Lease length, 1s..=1h, humantime format. Default 30s. The schema's pattern lists the
    /// single-unit forms (`10s`, `5m`, `1h`); compound forms such as `1m 30s` are accepted too.
    #[serde(default)]
    #[schema(example = "10s")]
    pub ttl: Option<String>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER, 64 hex digits.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Up to 32 topic subscriptions; a pattern is dot-separated tokens `[a-z0-9_-]{1,63}`,
    /// `*` (one token) or a final `>` (the rest), at most 255 bytes; the group defaults to
    /// the service.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::Subscription>>)]
    pub subscriptions: Option<Vec<Subscription>>,
}

impl RegisterBody {
    /// Validates every field into a [`Registration`]; the first invalid field is the error.
    pub fn into_registration(self) -> Result<Registration, ValidationError> {
        Ok(Registration {
            address: Address::new(&self.address)?,
            tags: Tags::new(self.tags.unwrap_or_default())?,
            meta: Meta::new(self.meta.unwrap_or_default())?,
            ttl: self
                .ttl
                .as_deref()
                .map(Ttl::parse)
                .transpose()?
                .unwrap_or_default(),
            fingerprint: self
                .fingerprint
                .as_deref()
                .map(Fingerprint::parse)
                .transpose()?,
            subscriptions: Subscriptions::new(self.subscriptions.unwrap_or_default())?,
        })
    }
}

/// `GET /v1/services` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServicesResponse {
    /// Global change index.
    pub index: u64,
    /// Services with at least one live instance, sorted by name.
    pub services: Vec<ServiceCount>,
    /// How fresh the answering node's view is (absent from older nodes' answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

/// One service and its live instance count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceCount {
    /// Service name.
    #[schema(value_type = String)]
    pub service: ServiceName,
    /// Live instances.
    pub instances: usize,
}

/// `GET /v1/services/{service}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceResponse {
    /// Service name.
    #[schema(value_type = String)]
    pub service: ServiceName,
    /// The service's change index (0 if it never had an instance here).
    pub index: u64,
    /// Live instances passing the filters, sorted by instance id.
    #[schema(value_type = Vec<Record>)]
    pub instances: Vec<Arc<Record>>,
    /// How fresh the answering node's view is (absent from older nodes' answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

/// One cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberRow {
    /// Node name.
    pub name: String,
    /// Gossip address (`host:port`); `null` for a node running without a cluster.
    pub address: Option<String>,
    /// `alive`, `suspect`, `dead` or `left`.
    #[schema(example = "alive")]
    pub state: String,
    /// SWIM incarnation (raised by the member to refute a suspicion).
    pub incarnation: u16,
    /// Per-start generation of the member's identity (a restart gets a higher one).
    pub generation: u64,
    /// When the state last changed as seen by this node (RFC 3339 UTC).
    pub last_change: String,
    /// Whether this row is the node that answered.
    pub local: bool,
    /// The first 16 hex digits of the SHA-256 of the ACL file the member enforces (what
    /// `directory acl hash` prints); `null` when it runs without one or has not said yet. Members showing different values
    /// enforce different rules. Absent from older nodes' answers.
    #[serde(default)]
    pub acl_hash: Option<String>,
}

/// `GET /v1/cluster/members` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembersResponse {
    /// The node that answered.
    pub node: String,
    /// Every member it knows, itself first; dead and left members stay listed until reaped.
    pub members: Vec<MemberRow>,
}

/// `GET /v1/health` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the node answers and all is well; `degraded` while it cannot hold what the
    /// cluster replicates to it (a replicated entry was refused for lack of room in the last
    /// minute: see `registry`). Either way the node serves requests.
    #[schema(example = "ok")]
    pub status: String,
    /// This node's name.
    pub node: String,
    /// Version of the directory software.
    pub version: String,
    /// What the registry holds against its limits. Absent from older nodes' answers.
    #[serde(default)]
    pub registry: Option<RegistryHealth>,
}

/// The registry part of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryHealth {
    /// Live instances held.
    pub instances: u64,
    /// The limit on them (`--max-instances`).
    pub max_instances: u64,
    /// Estimated bytes of every entry held, tombstones included.
    pub bytes: u64,
    /// The byte budget (`--max-registry-bytes`).
    pub max_bytes: u64,
    /// Entries replicated from other nodes that this node refused since it started because
    /// it was full: while this grows, the node's view differs from the cluster's.
    pub refused_replicated_entries: u64,
}
