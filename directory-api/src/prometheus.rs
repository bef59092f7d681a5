//! Prometheus HTTP service discovery: the body of `GET /v1/sd/prometheus`.
//!
//! Prometheus's `http_sd_configs` reads a JSON array of target groups, each a list of
//! `host:port` targets sharing a set of labels. Labels starting with `__meta_` are dropped
//! after relabelling, so they inform `relabel_configs` without reaching the stored series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Prefix of every discovery label the directory sets.
pub const SD_LABEL_PREFIX: &str = "__meta_directory_";

/// One target group of Prometheus's HTTP SD format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "targets": ["10.0.0.7:9100"],
    "labels": {
        "__meta_directory_service": "orders",
        "__meta_directory_instance": "orders-1",
        "__meta_directory_node": "directory-1",
        "__meta_directory_tags": ",v2,canary,",
        "__meta_directory_meta_zone": "a"
    }
}))]
pub struct TargetGroup {
    /// `host:port` addresses to scrape (one registered instance).
    pub targets: Vec<String>,
    /// Discovery labels of the group: `__meta_directory_service`, `_instance`, `_node` (the
    /// owning directory node), `_tags` (the tags between commas, `,a,b,`, so a regex
    /// `.*,a,.*` tests one) and `_meta_<key>` per meta pair (characters outside
    /// `[a-zA-Z0-9_]` in the key become `_`).
    pub labels: BTreeMap<String, String>,
}
