//! `GET /v1/sd/prometheus`: the registry in Prometheus's HTTP service discovery format.
//!
//! One target group per live instance, services in name order and instances in id order.
//! A group's labels apply to all of its targets, so per-instance labels (instance id, tags,
//! meta, owning node) need a group each; `__meta_directory_service` groups them by service
//! in Prometheus's relabelling.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use directory_api::{ErrorBody, SD_LABEL_PREFIX, TargetGroup};

use super::AppState;
use super::error::ApiError;
use super::query::SdQuery;
use crate::acl::Access;
use crate::registry::{Record, ServiceName};

/// Live instances as Prometheus HTTP SD target groups.
#[utoipa::path(
    get,
    path = "/v1/sd/prometheus",
    params(
        ("service" = Option<Vec<String>>, Query, description = "repeatable; only these services (default: every service the token may read)"),
        ("tag" = Option<Vec<String>>, Query, description = "repeatable; every tag must be present"),
        ("meta" = Option<Vec<String>>, Query, description = "repeatable key:value; every pair must match"),
    ),
    responses(
        (status = 200, description = "one target group per live instance (an empty array when none match); \
the format of Prometheus's http_sd_configs", body = Vec<TargetGroup>),
        (status = 400, description = "invalid service name or query", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read a named service, or no service at all", body = ErrorBody),
    ),
    tag = "services"
)]
pub async fn targets(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<TargetGroup>>, ApiError> {
    let query = SdQuery::parse(raw.as_deref())?;
    let services = selected_services(&state, &access, query.services)?;
    let groups = services
        .iter()
        .flat_map(|service| state.registry().lookup(service, &query.filter).instances)
        .map(|record| target_group(&record))
        .collect();
    Ok(Json(groups))
}

/// The named services (each must be readable), or every readable service.
fn selected_services(
    state: &AppState,
    access: &Access,
    named: Vec<ServiceName>,
) -> Result<Vec<ServiceName>, ApiError> {
    if named.is_empty() {
        access.list()?;
        let (_, all) = state.registry().services();
        return Ok(all
            .into_iter()
            .map(|s| s.service)
            .filter(|s| access.can_read(s.as_str()))
            .collect());
    }
    for service in &named {
        access.read(service.as_str())?;
    }
    let mut named = named;
    named.sort_unstable();
    named.dedup();
    Ok(named)
}

/// The target group of one instance.
pub fn target_group(record: &Record) -> TargetGroup {
    let mut labels = BTreeMap::new();
    let mut label = |name: &str, value: String| {
        labels.insert(format!("{SD_LABEL_PREFIX}{name}"), value);
    };
    label("service", record.service.to_string());
    label("instance", record.instance.to_string());
    label("node", record.owner.to_string());
    label("tags", joined_tags(record));
    for (key, value) in record.meta.iter() {
        label(&format!("meta_{}", label_safe(key)), value.to_owned());
    }
    TargetGroup {
        targets: vec![record.address.as_str().to_owned()],
        labels,
    }
}

/// Tags between commas (`,a,b,`; `` when none), Consul SD's convention.
fn joined_tags(record: &Record) -> String {
    if record.tags.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = record.tags.iter().collect();
    format!(",{},", inner.join(","))
}

/// `key` as a Prometheus label name part: characters outside `[a-zA-Z0-9_]` become `_`.
fn label_safe(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_become_valid_label_names() {
        assert_eq!(label_safe("zone"), "zone");
        assert_eq!(label_safe("rack.id-2"), "rack_id_2");
        assert_eq!(label_safe("é"), "_");
    }
}
