//! [`ClusterContact`]: when this node last heard from another member of its cluster, and
//! whether it sees itself isolated. The gossip driver records it; every lookup answer reports
//! it (`directory_api::Staleness`), natively and as Consul's `X-Consul-LastContact`/`X-Consul-KnownLeader`.
//!
//! A node without a cluster is the whole cluster: its answers are never stale (last contact
//! 0, not isolated). A clustered node counts from its start until the first authenticated
//! datagram or anti-entropy session arrives, so a node that never reached anyone reports its
//! uptime and `isolated: true`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use directory_api::Staleness;
use tokio::time::Instant;

/// The shared contact state of one node. Cheap to read (two atomic loads).
#[derive(Debug)]
pub struct ClusterContact {
    /// `None`: a standalone node (no cluster), always fresh.
    started: Option<Instant>,
    /// Milliseconds after `started` of the last contact.
    last_ms: AtomicU64,
    isolated: AtomicBool,
}

impl ClusterContact {
    /// A node without a cluster: never stale, never isolated.
    pub fn standalone() -> Self {
        Self {
            started: None,
            last_ms: AtomicU64::new(0),
            isolated: AtomicBool::new(false),
        }
    }

    /// A clustered node started at `started`: isolated, and counting, until first contact.
    pub fn clustered(started: Instant) -> Self {
        Self {
            started: Some(started),
            last_ms: AtomicU64::new(0),
            isolated: AtomicBool::new(true),
        }
    }

    /// Records that another member was heard from at `now`.
    pub fn handle_contact(&self, now: Instant) {
        if let Some(started) = self.started {
            let ms = u64::try_from(now.saturating_duration_since(started).as_millis())
                .unwrap_or(u64::MAX);
            self.last_ms.fetch_max(ms, Ordering::AcqRel);
        }
    }

    /// Records whether the node knows any live member besides itself.
    pub fn handle_members(&self, live_others: usize) {
        if self.started.is_some() {
            self.isolated.store(live_others == 0, Ordering::Release);
        }
    }

    /// The staleness as of `now`.
    pub fn staleness(&self, now: Instant) -> Staleness {
        let Some(started) = self.started else {
            return Staleness {
                last_contact_ms: 0,
                isolated: false,
            };
        };
        let last = started + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        let since = now.saturating_duration_since(last);
        Staleness {
            last_contact_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
            isolated: self.isolated.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_node_is_never_stale_nor_isolated() {
        let contact = ClusterContact::standalone();
        contact.handle_members(0);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(contact.staleness(later).last_contact_ms, 0);
        assert!(!contact.staleness(later).isolated);
    }

    #[test]
    fn a_clustered_node_counts_from_its_last_contact_and_reports_isolation() {
        let start = Instant::now();
        let contact = ClusterContact::clustered(start);
        let s = contact.staleness(start + Duration::from_secs(3));
        assert_eq!((s.last_contact_ms, s.isolated), (3000, true));
        contact.handle_contact(start + Duration::from_secs(2));
        contact.handle_members(2);
        let s = contact.staleness(start + Duration::from_secs(3));
        assert_eq!((s.last_contact_ms, s.isolated), (1000, false));
        // An older report never moves the last contact backwards.
        contact.handle_contact(start + Duration::from_secs(1));
        assert_eq!(
            contact
                .staleness(start + Duration::from_secs(3))
                .last_contact_ms,
            1000
        );
        contact.handle_members(0);
        assert!(contact.staleness(start).isolated);
    }
}
