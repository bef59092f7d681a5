//! `GET /v1/cluster/members`: every known cluster member and its state.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;

/// One cluster member.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
}

/// `GET /v1/cluster/members` response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembersResponse {
    /// The node that answered.
    pub node: String,
    /// Every member it knows, itself first; dead and left members stay listed until reaped.
    pub members: Vec<MemberRow>,
}

/// Cluster members as seen by this node (a single-node directory lists only itself).
#[utoipa::path(
    get,
    path = "/v1/cluster/members",
    responses((status = 200, body = MembersResponse)),
    tag = "cluster"
)]
pub async fn members(State(state): State<AppState>) -> Json<MembersResponse> {
    let node = state.0.config.registry.node.to_string();
    let now = SystemTime::now();
    let stamp = |ago| humantime::format_rfc3339_millis(now - ago).to_string();
    let members = match &state.0.gossip {
        None => vec![MemberRow {
            name: node.clone(),
            address: None,
            state: "alive".into(),
            incarnation: 0,
            generation: 0,
            last_change: stamp(std::time::Duration::ZERO),
            local: true,
        }],
        Some(gossip) => gossip
            .members()
            .await
            .into_iter()
            .map(|m| MemberRow {
                name: m.identity.name.clone(),
                address: Some(m.identity.addr.to_string()),
                state: serde_json::to_value(m.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                incarnation: m.incarnation,
                generation: m.identity.generation,
                last_change: stamp(m.since),
                local: m.is_local,
            })
            .collect(),
    };
    Json(MembersResponse { node, members })
}
