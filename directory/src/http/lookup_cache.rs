//! [`LookupCache`]: rendered bodies of unfiltered lookups, kept while their service is
//! unchanged, within a byte budget.
//!
//! An unfiltered lookup of a busy service is the hottest request; rendering its JSON once
//! per change instead of once per request is what the cache is for. Each entry is tagged
//! with the service's revision, so a changed service misses and is rendered again. The
//! budget bounds memory: a body that would exceed it is not cached (and the service's older
//! body is dropped).

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use dashmap::DashMap;

use crate::registry::ServiceName;

/// Rendered unfiltered lookups by service, bounded by a byte budget.
#[derive(Debug)]
pub struct LookupCache {
    entries: DashMap<ServiceName, CachedLookup>,
    /// Bytes held by `entries`, at most `budget`.
    used: AtomicUsize,
    budget: usize,
}

/// A rendered lookup, valid while the service's revision is unchanged.
#[derive(Debug, Clone)]
struct CachedLookup {
    revision: u64,
    body: Bytes,
}

impl LookupCache {
    /// An empty cache that holds at most `budget` bytes of bodies.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: DashMap::new(),
            used: AtomicUsize::new(0),
            budget,
        }
    }

    /// The cached body of `service` if it was rendered at `revision`.
    pub fn get(&self, service: &ServiceName, revision: u64) -> Option<Bytes> {
        self.entries
            .get(service)
            .filter(|c| c.revision == revision)
            .map(|c| c.body.clone())
    }

    /// Caches `body` as `service`'s rendering at `revision` if it fits the budget
    /// (replacing the service's older one); otherwise drops the older one.
    pub fn remember(&self, service: &ServiceName, revision: u64, body: &Bytes) {
        let old = self.entries.get(service).map_or(0, |c| c.body.len());
        let fits = self.used().saturating_sub(old) + body.len() <= self.budget;
        if !fits {
            self.forget(service);
            return;
        }
        let entry = CachedLookup {
            revision,
            body: body.clone(),
        };
        self.used.fetch_add(body.len(), Ordering::Relaxed);
        if let Some(replaced) = self.entries.insert(service.clone(), entry) {
            self.used.fetch_sub(replaced.body.len(), Ordering::Relaxed);
        }
    }

    /// Drops `service`'s cached rendering.
    pub fn forget(&self, service: &ServiceName) {
        if let Some((_, old)) = self.entries.remove(service) {
            self.used.fetch_sub(old.body.len(), Ordering::Relaxed);
        }
    }

    /// Bytes of bodies held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::new(s).unwrap()
    }

    #[test]
    fn a_body_is_served_only_at_the_revision_it_was_rendered_at() {
        let cache = LookupCache::new(100);
        cache.remember(&name("a"), 3, &Bytes::from_static(b"abc"));
        assert_eq!(cache.get(&name("a"), 3).as_deref(), Some(&b"abc"[..]));
        assert_eq!(cache.get(&name("a"), 4), None);
        assert_eq!(cache.get(&name("b"), 3), None);
    }

    #[test]
    fn the_budget_bounds_the_bytes_held_and_replacements_are_counted_once() {
        let cache = LookupCache::new(10);
        cache.remember(&name("a"), 1, &Bytes::from(vec![0; 6]));
        cache.remember(&name("a"), 2, &Bytes::from(vec![0; 8]));
        assert_eq!(cache.used(), 8);
        cache.remember(&name("b"), 1, &Bytes::from(vec![0; 3]));
        assert_eq!(cache.used(), 8, "b does not fit beside a");
        assert_eq!(cache.get(&name("b"), 1), None);
        cache.remember(&name("a"), 3, &Bytes::from(vec![0; 11]));
        assert_eq!(
            cache.used(),
            0,
            "a body over the budget evicts the older one"
        );
        assert_eq!(cache.get(&name("a"), 2), None);
        cache.remember(&name("b"), 1, &Bytes::from(vec![0; 3]));
        cache.forget(&name("b"));
        assert_eq!(cache.used(), 0);
    }
}
