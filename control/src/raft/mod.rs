//! The managers' Raft group: [`RaftNode`] runs openraft over the store in
//! [`crate::store`], and peers talk through the `shoal.raft.Raft` gRPC
//! service (port 2377, mutual TLS through the caller's [`PeerConnector`]).
//!
//! openraft stays behind this module and [`crate::store`]: the daemon sees
//! only [`RaftNode`], [`Command`](crate::store::Command) and
//! [`Objects`](crate::store::Objects). Snapshots stream in chunks with a
//! deadline per chunk and none for the whole transfer. No netlink, eBPF or
//! process code belongs here.

mod manager_store;
mod network;
mod node;
mod service;

pub use network::{PeerConnector, PlaintextConnector};
pub use node::{
    Member, PeerStatus, RaftNode, RaftRole, RaftStatus, RaftTuning, WriteError, MAX_COMMAND_BYTES,
};
pub use service::{RaftService, ServiceStats};

use crate::proto::raft::raft_server::RaftServer;

/// The `shoal.raft.Raft` gRPC service of `node`, ready for a tonic router.
pub fn service(node: &RaftNode) -> RaftServer<RaftService> {
    node.service().into_server()
}

#[cfg(test)]
mod tests;
