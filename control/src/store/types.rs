//! openraft's type configuration for shoal, and short names for the openraft
//! types the store and the network pass around.

use super::{Command, Response};

openraft::declare_raft_types!(
    /// Raft ids are `u64`, a member's address is an `openraft::BasicNode`,
    /// log entries carry [`Command`]s and answer [`Response`]s.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type Membership = openraft::Membership<u64, openraft::BasicNode>;
/// Snapshot data travels and is installed as one buffer of JSON.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
