//! Reads: one service's live instances (filtered), single instances and the catalog.

use std::sync::Arc;

use super::{Registry, Slot};
use crate::registry::Record;
use crate::registry::{InstanceId, ServiceName};

/// A service's live instances at one index.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// The service's change index (0 if the service is unknown).
    pub index: u64,
    /// Changes on every mutation including renewals; a rendered response cached under
    /// `(service, revision)` is still exact.
    pub revision: u64,
    /// Live instances, sorted by instance id.
    pub instances: Vec<Arc<Record>>,
}

/// Instance filters for lookups: every tag must be present and every meta pair must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Tags that must all be present.
    pub tags: Vec<String>,
    /// `(key, value)` pairs that must all match.
    pub meta: Vec<(String, String)>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.meta.is_empty()
    }

    /// Whether `record` passes.
    pub fn matches(&self, record: &Record) -> bool {
        record.tags.contains_all(&self.tags)
            && self
                .meta
                .iter()
                .all(|(k, v)| record.meta.get(k) == Some(v.as_str()))
    }
}

/// One service in the catalog listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    /// The service.
    pub service: ServiceName,
    /// How many live instances it has.
    pub instances: usize,
}

impl Registry {
    /// The live instances of `service` passing `filter`. An unknown service is empty with
    /// index 0.
    pub fn lookup(&self, service: &ServiceName, filter: &Filter) -> ServiceView {
        let Some(svc) = self.inner.services.get(service) else {
            return ServiceView {
                index: 0,
                revision: 0,
                instances: Vec::new(),
            };
        };
        let instances = svc
            .slots
            .values()
            .filter_map(Slot::live_record)
            .filter(|r| filter.is_empty() || filter.matches(r))
            .cloned()
            .collect();
        ServiceView {
            index: svc.index,
            revision: svc.revision,
            instances,
        }
    }

    /// `(index, revision)` of a service without copying its instances (for response caches).
    pub fn service_revision(&self, service: &ServiceName) -> (u64, u64) {
        self.inner
            .services
            .get(service)
            .map_or((0, 0), |s| (s.index, s.revision))
    }

    /// One live instance.
    pub fn instance(&self, service: &ServiceName, instance: &InstanceId) -> Option<Arc<Record>> {
        let svc = self.inner.services.get(service)?;
        svc.slots.get(instance).and_then(Slot::live_record).cloned()
    }

    /// Every service with at least one live instance, sorted by name, and the global index.
    pub fn services(&self) -> (u64, Vec<ServiceSummary>) {
        let index = self.index();
        let mut list: Vec<ServiceSummary> = self
            .inner
            .services
            .iter()
            .filter(|s| s.live > 0)
            .map(|s| ServiceSummary {
                service: s.key().clone(),
                instances: s.live,
            })
            .collect();
        list.sort_unstable_by(|a, b| a.service.cmp(&b.service));
        (index, list)
    }
}
