//! Typed errors of registry operations.

use super::{InstanceId, ServiceName};

/// Why a registration was refused. The store is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The store already holds `max` live instances. Remedy: deregister instances or raise
    /// the node's `max_instances`. Replacing an existing instance is still allowed.
    #[error("capacity full: this node already holds its maximum of {max} instances")]
    CapacityFull {
        /// The configured limit.
        max: usize,
    },
    /// Taking the entry would push the store's estimated size past `max_bytes`
    /// (`--max-registry-bytes`). Remedy: deregister instances, register smaller ones (fewer
    /// or shorter tags and meta), or raise the budget. Renewals and smaller replacements
    /// are still allowed.
    #[error(
        "registry byte budget full: this node holds about {used_bytes} of its {max_bytes} bytes and this entry needs about {entry_bytes}"
    )]
    BytesFull {
        /// The configured budget.
        max_bytes: usize,
        /// The estimated bytes held when the entry was refused.
        used_bytes: usize,
        /// The estimated bytes of the refused entry.
        entry_bytes: usize,
    },
}

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    /// The instance is not registered, or its lease already ran out (in which case it has
    /// now been expired). Remedy: register again.
    #[error(
        "instance {instance} of service {service} is not registered (unknown or expired); register it again"
    )]
    NotFound {
        /// The service.
        service: ServiceName,
        /// The instance.
        instance: InstanceId,
    },
}
