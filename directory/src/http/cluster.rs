//! `GET /v1/cluster/members`: every known cluster member and its state.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use directory_api::{MemberRow, MembersResponse};

use super::AppState;

/// Cluster members as seen by this node (a single-node directory lists only itself).
#[utoipa::path(
    get,
    path = "/v1/cluster/members",
    responses((status = 200, description = "every member this node knows, itself first", body = MembersResponse)),
    tag = "cluster"
)]
pub async fn members(State(state): State<AppState>) -> Json<MembersResponse> {
    let node = state.config().node_name.to_string();
    let now = SystemTime::now();
    let stamp = |ago| humantime::format_rfc3339_millis(now - ago).to_string();
    let members = match state.gossip() {
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
