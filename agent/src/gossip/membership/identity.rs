//! Who a gossip member is: the node id, its gossip address and a `bump`
//! generation. A restarted or wrongly-declared-dead node comes back with a
//! higher bump, and the higher bump wins every conflict on the same address,
//! so the fresh identity supersedes the old one everywhere.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use crate::gossip::node_id::NodeId;

/// A member's identity on the wire: node id, gossip address and bump.
///
/// The gossip address is the member's slot (foca's `Identity::Addr`): two
/// identities on one address are two lives of one member, and the one with
/// the higher bump wins. The agent starts with the Unix time in milliseconds
/// as its bump, so a restarted agent supersedes its previous life; when the
/// cluster declares it dead while it still runs, it renews itself with
/// `bump + 1` and rejoins at once.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct MemberId {
    node: NodeId,
    addr: SocketAddr,
    bump: u64,
}

impl MemberId {
    /// The identity of `node` gossiping on `addr`, generation `bump`.
    pub fn new(node: impl Into<NodeId>, addr: SocketAddr, bump: u64) -> Self {
        Self {
            node: node.into(),
            addr,
            bump,
        }
    }

    /// An identity that only names an address: what `join` announces to,
    /// since a seed's node id and bump are not known before it answers.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self::new("", addr, 0)
    }

    /// The node id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The gossip (UDP and TCP) address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The generation of this identity; higher supersedes lower.
    pub fn bump(&self) -> u64 {
        self.bump
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node, self.addr, self.bump)
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // The node id only breaks ties between two different nodes that
        // claim one address with the same bump, so that every member
        // picks the same winner.
        (self.bump, &self.node) > (adversary.bump, &adversary.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 7946))
    }

    #[test]
    fn renewed_identity_supersedes_the_old_one() {
        let old = MemberId::new("n1", addr(), 41);
        let new = old.renew().unwrap_or_else(|| old.clone());
        assert_eq!(new.bump(), 42);
        assert_eq!(new.node(), old.node());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn restart_with_a_later_clock_wins() {
        let before = MemberId::new("n1", addr(), 1_000);
        let after = MemberId::new("n1", addr(), 5_000);
        assert!(after.win_addr_conflict(&before));
    }

    #[test]
    fn bump_at_the_end_of_its_range_cannot_renew() {
        assert!(MemberId::new("n1", addr(), u64::MAX).renew().is_none());
    }

    #[test]
    fn identity_round_trips_through_postcard() {
        let id = MemberId::new("node-abc", addr(), 1_700_000_000_000);
        let bytes = postcard::to_allocvec(&id).unwrap_or_default();
        let back: Result<MemberId, _> = postcard::from_bytes(&bytes);
        assert_eq!(back.ok(), Some(id));
    }
}
