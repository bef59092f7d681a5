//! The identity a node carries in the SWIM membership (foca's [`foca::Identity`]).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a cluster member is: its gossip address, its node name and a per-start generation.
///
/// The gossip address is the member's unique key in foca (`Identity::Addr`): a seed is
/// reached by address alone, before its name is known. The `generation` changes every time
/// the process starts (it starts from the wall-clock milliseconds at start) and every time
/// foca renews the identity after a false "down" verdict, so a restarted node is a *new*
/// identity that wins the conflict with its previous, dead one at once: there is no window
/// during which the cluster refuses the name.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Address other members send gossip datagrams and sync streams to.
    pub addr: SocketAddr,
    /// Human-readable node name (`--node-name`), shown in member lists and record owners.
    pub name: String,
    /// Per-start generation: higher wins an address conflict.
    pub generation: u64,
}

impl NodeIdentity {
    /// Creates the identity of a node starting now; `generation` should grow across restarts
    /// (the wall-clock milliseconds at start are a good choice).
    pub fn new(addr: SocketAddr, name: impl Into<String>, generation: u64) -> Self {
        Self {
            addr,
            name: name.into(),
            generation,
        }
    }

    /// A placeholder identity for a seed known only by address: foca accepts an
    /// `Announce` addressed to any identity with the receiver's address.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            addr,
            name: String::new(),
            generation: 0,
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            name: self.name.clone(),
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn restarted_identity_wins_the_address_conflict() {
        let addr: SocketAddr = "127.0.0.1:7701".parse().unwrap();
        let old = NodeIdentity::new(addr, "a", 100);
        let restarted = NodeIdentity::new(addr, "a", 200);
        assert!(restarted.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&restarted));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(renewed.addr(), addr);
    }
}
