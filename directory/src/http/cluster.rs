//! `GET /v1/cluster/members`: every known cluster member and its state.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use directory_api::{ErrorBody, MemberRow, MembersResponse};

use super::AppState;
use super::error::ApiError;
use super::query::NoQuery;
use crate::acl::Access;

/// Cluster members as seen by this node (a single-node directory lists only itself).
#[utoipa::path(
    get,
    path = "/v1/cluster/members",
    responses(
        (status = 200, description = "every member this node knows, itself first", body = MembersResponse),
        (status = 400, description = "invalid_query: the route takes no query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not use operator endpoints (needs the operator rule)", body = ErrorBody),
    ),
    tag = "cluster"
)]
pub async fn members(
    State(state): State<AppState>,
    access: Access,
    _: NoQuery,
) -> Result<Json<MembersResponse>, ApiError> {
    access.operator()?;
    let node = state.config().registry.node.to_string();
    let local_acl = state.acl().map(crate::acl::Acl::file_hash);
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
            acl_hash: local_acl,
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
                acl_hash: m.acl_hash.map(hex::encode),
            })
            .collect(),
    };
    Ok(Json(MembersResponse { node, members }))
}
