//! Knobs of the registry itself (the server's [`crate::Config`] carries them).

use std::num::NonZeroUsize;

use super::NodeName;
use super::rules::{ReplicationRules, RulesError};

/// Default capacity: a million live instances fit in well under 1 GiB of memory.
pub const DEFAULT_MAX_INSTANCES: usize = 1_000_000;
/// Default byte budget of the store (512 MiB of estimated entry bytes, see
/// `store::budget`): the estimate tracks the registry's own memory, so with the gossip
/// replica's copy, the lookup cache and allocator slack a full node's RSS stays around
/// 1 GiB. A million small instances (about 600 estimated bytes each) fit; 20,000 instances
/// with 60 meta values of 1 KiB (about 65 KB each) take a quarter of it.
pub const DEFAULT_MAX_REGISTRY_BYTES: usize = 512 * 1024 * 1024;
/// Default watch-event buffer: how far a slow watcher may fall behind before it is told it
/// lagged (and must resynchronise with a lookup), and how many recent changes a resumed
/// watch can replay. 4096 events of a few hundred bytes each: about 1-2 MB.
pub const DEFAULT_EVENT_BUFFER: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(n) => n,
    None => unreachable!(),
};
/// Node name used when none is configured.
pub const DEFAULT_NODE_NAME: &str = "directory-1";

/// Registry configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// This node's name: recorded as the owner of instances it accepts, and hashed into
    /// the tie-breaker of every version it writes. Must be unique in a cluster.
    pub node: NodeName,
    /// Most live instances held; registrations above it are refused (`capacity_full`) and
    /// change nothing. Replicated entries count and are refused too (counted, logged and
    /// shown by `/v1/health`). Default [`DEFAULT_MAX_INSTANCES`].
    pub max_instances: usize,
    /// Byte budget: most estimated bytes of all entries held (live records and tombstones,
    /// local and replicated; see [`crate::registry::SLOT_OVERHEAD_BYTES`]). A live write that
    /// would pass it is refused (`registry_bytes_full`, or a refused replicated entry);
    /// tombstones are always taken. Default [`DEFAULT_MAX_REGISTRY_BYTES`].
    pub max_registry_bytes: usize,
    /// Tombstone retention and lease grace: the knobs of the replication rules, shared with
    /// the gossip replica (see [`ReplicationRules`]). Default [`ReplicationRules::default`].
    pub replication: ReplicationRules,
    /// Watch events buffered per subscriber, and the length of the change history resumed
    /// watches replay from (older resume points get a gap). Default
    /// [`DEFAULT_EVENT_BUFFER`].
    pub event_buffer: NonZeroUsize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            // The literal matches the name pattern; checked by `default_config_is_valid`.
            node: NodeName::new(DEFAULT_NODE_NAME).unwrap_or_else(|_| unreachable!()),
            max_instances: DEFAULT_MAX_INSTANCES,
            max_registry_bytes: DEFAULT_MAX_REGISTRY_BYTES,
            replication: ReplicationRules::default(),
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl RegistryConfig {
    /// The defaults, for tests (tests drive the registry's time, so no knob needs shortening).
    pub fn for_test() -> Self {
        Self::default()
    }

    /// Checks every constraint documented on the fields (today: the replication rules').
    pub fn validate(&self) -> Result<(), RulesError> {
        self.replication.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building the default parses `DEFAULT_NODE_NAME` (an invalid literal would panic here),
    /// and every default has the value its documentation gives.
    #[test]
    fn default_config_is_valid() {
        let c = RegistryConfig::default();
        assert_eq!(c.node.as_str(), DEFAULT_NODE_NAME);
        assert_eq!(
            NodeName::new(DEFAULT_NODE_NAME).map(|n| n.as_str().to_owned()),
            Ok(DEFAULT_NODE_NAME.to_owned())
        );
        assert_eq!(c.max_instances, 1_000_000);
        assert_eq!(c.max_registry_bytes, 512 * 1024 * 1024);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.replication, ReplicationRules::default());
        assert_eq!(c.event_buffer.get(), 4096);
        let t = RegistryConfig::for_test();
        assert_eq!(
            (t.max_instances, t.event_buffer, t.replication),
            (c.max_instances, c.event_buffer, c.replication)
        );
    }
}
