//! Consul reads: `catalog/services`, `catalog/service/:name`, `catalog/nodes`,
//! `health/service/:name`, `agent/self`, `status/leader`, `status/peers`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::filter::Vocabulary;
use super::query::{Accepts, ConsulQuery};
use super::shapes::{self, Instance};
use super::types::{AgentConfig, AgentMember, AgentSelf, DATACENTER};
use super::{answer, block_on_catalog, block_on_service, local_host, node_addresses};
use crate::acl::Access;
use crate::gossip::MemberState;
use crate::http::path::ServicePath;
use crate::http::{ApiError, AppState};
use crate::registry::{CheckStatus, status_at};
use crate::registry::{Filter, Record, ServiceName};

const CATALOG_SERVICES: Accepts = Accepts {
    blocking: true,
    node_meta: true,
    filter: Some(Vocabulary::Catalog),
    ..Accepts::NOTHING
};
const CATALOG_SERVICE: Accepts = Accepts {
    blocking: true,
    tag: true,
    node_meta: true,
    filter: Some(Vocabulary::Catalog),
    near: true,
    ..Accepts::NOTHING
};
const HEALTH_SERVICE: Accepts = Accepts {
    passing: true,
    filter: Some(Vocabulary::Health),
    ..CATALOG_SERVICE
};

/// `GET /v1/catalog/services`: every service the token may read, with the union of its
/// instances' tags.
pub async fn catalog_services(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.list()?;
    let q = ConsulQuery::parse(raw.as_deref(), CATALOG_SERVICES)?;
    block_on_catalog(&state, &q).await;
    let index = state.registry().index();
    let nodes = node_addresses(&state).await;
    let (_, services) = state.registry().services();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for summary in services
        .iter()
        .filter(|s| access.can_read(s.service.as_str()))
    {
        let view = state
            .registry()
            .lookup(&summary.service, &Filter::default());
        for instance in selected(&view.instances, &nodes, &q) {
            out.entry(summary.service.to_string())
                .or_default()
                .extend(instance.tags);
        }
    }
    Ok(answer(index, &out))
}

/// `GET /v1/catalog/service/:name`.
pub async fn catalog_service(
    State(state): State<AppState>,
    access: Access,
    ServicePath(service): ServicePath,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.read(service.as_str())?;
    let q = ConsulQuery::parse(raw.as_deref(), CATALOG_SERVICE)?;
    let (index, records, nodes) = service_view(&state, &service, &q).await;
    let body: Vec<_> = selected(&records, &nodes, &q)
        .map(|i| i.catalog_service())
        .collect();
    Ok(answer(index, &body))
}

/// `GET /v1/health/service/:name`: each instance with its service check; `passing` keeps
/// the instances whose check passes.
pub async fn health_service(
    State(state): State<AppState>,
    access: Access,
    ServicePath(service): ServicePath,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.read(service.as_str())?;
    let q = ConsulQuery::parse(raw.as_deref(), HEALTH_SERVICE)?;
    let (index, records, nodes) = service_view(&state, &service, &q).await;
    let now = SystemTime::now();
    let body: Vec<_> = selected(&records, &nodes, &q)
        .filter(|i| !q.passing || status_at(i.record, now).0 == CheckStatus::Passing)
        .map(|i| i.health_entry(now))
        .collect();
    Ok(answer(index, &body))
}

/// `GET /v1/catalog/nodes`: this node and every member it sees alive.
pub async fn catalog_nodes(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.list()?;
    let q = ConsulQuery::parse(
        raw.as_deref(),
        Accepts {
            node_meta: true,
            ..Accepts::NOTHING
        },
    )?;
    let index = state.registry().index();
    let nodes: BTreeMap<String, String> = node_addresses(&state).await.into_iter().collect();
    let body: Vec<_> = nodes
        .iter()
        .filter(|_| node_meta_matches(&q))
        .map(|(name, address)| shapes::node(name, address, super::consul_index(index)))
        .collect();
    Ok(answer(index, &body))
}

/// `GET /v1/agent/self`: the fields common clients read (operator right).
pub async fn agent_self(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    access.operator()?;
    ConsulQuery::parse(raw.as_deref(), Accepts::NOTHING)?;
    let name = state.config().registry.node.to_string();
    let body = AgentSelf {
        config: AgentConfig {
            datacenter: DATACENTER.to_owned(),
            node_name: name.clone(),
            node_id: shapes::node_id(&name),
            server: true,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        member: AgentMember {
            name,
            addr: local_host(&state).to_string(),
            port: state.config().http_addr.port(),
            status: 1,
            tags: BTreeMap::new(),
        },
        meta: shapes::node_meta(),
    };
    Ok(answer(state.registry().index(), &body))
}

/// `GET /v1/status/leader`: a leaderless cluster has no leader; this node's address stands
/// in while it sees other members (or runs alone), `""` (Consul's "no leader") when it sees
/// itself isolated. No right needed, as in Consul.
pub async fn status_leader(State(state): State<AppState>) -> Json<String> {
    if state.staleness().isolated {
        return Json(String::new());
    }
    Json(self_address(&state))
}

/// `GET /v1/status/peers`: the gossip addresses of the alive members (this node's address
/// alone without a cluster).
pub async fn status_peers(State(state): State<AppState>) -> Json<Vec<String>> {
    let Some(gossip) = state.gossip() else {
        return Json(vec![self_address(&state)]);
    };
    let peers = gossip
        .members()
        .await
        .into_iter()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.identity.addr.to_string())
        .collect();
    Json(peers)
}

fn self_address(state: &AppState) -> String {
    match state.gossip() {
        Some(g) => g.advertise_addr().to_string(),
        None => std::net::SocketAddr::new(local_host(state), state.config().http_addr.port())
            .to_string(),
    }
}

/// A service's live instances after the blocking wait, with the node addresses.
async fn service_view(
    state: &AppState,
    service: &ServiceName,
    q: &ConsulQuery,
) -> (u64, Vec<std::sync::Arc<Record>>, HashMap<String, String>) {
    block_on_service(state, service, q).await;
    metrics::counter!("directory_lookups_total").increment(1);
    let view = state.registry().lookup(service, &Filter::default());
    (view.index, view.instances, node_addresses(state).await)
}

/// The instances passing `tag`, `node-meta` and `filter`.
fn selected<'a>(
    records: &'a [std::sync::Arc<Record>],
    nodes: &'a HashMap<String, String>,
    q: &'a ConsulQuery,
) -> impl Iterator<Item = Instance<'a>> + 'a {
    records
        .iter()
        .filter(|r| r.tags.contains_all(&q.tags) && node_meta_matches(q))
        .map(|r| {
            let address = nodes
                .get(r.owner.as_str())
                .cloned()
                .unwrap_or_else(|| r.address.host().to_owned());
            Instance::new(r, address)
        })
        .filter(|i| q.filter.as_ref().is_none_or(|f| f.matches(&i.subject())))
}

/// Whether the fixed node meta has every `node-meta` pair asked for.
fn node_meta_matches(q: &ConsulQuery) -> bool {
    let meta = shapes::node_meta();
    q.node_meta
        .iter()
        .all(|(k, v)| meta.get(k).is_some_and(|m| m == v))
}
