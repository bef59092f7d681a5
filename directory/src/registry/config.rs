//! Knobs of the registry itself (the server's [`crate::Config`] carries them).

use std::num::NonZeroUsize;

use super::NodeName;
use super::rules::{ReplicationRules, RulesError};

/// Default capacity: a million live instances fit in well under 1 GiB of memory.
pub const DEFAULT_MAX_INSTANCES: usize = 1_000_000;
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
    /// Most live instances accepted from clients; registrations above it are refused
    /// (`capacity_full`) and change nothing. Replicated entries are admitted regardless so
    /// nodes converge. Default [`DEFAULT_MAX_INSTANCES`].
    pub max_instances: usize,
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
