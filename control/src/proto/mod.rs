//! The gRPC services (generated from `control/proto/`), and the one mapping
//! between manager errors and gRPC statuses ([`status`]).

pub mod status;

/// The CLI-facing `Control` service.
#[allow(clippy::all, missing_docs)]
pub mod control {
    tonic::include_proto!("shoal.control");
}

/// Raft between managers (`RaftNode` in `crate::raft` serves and calls it).
#[allow(clippy::all, missing_docs)]
pub mod raft {
    tonic::include_proto!("shoal.raft");
}

/// The node's image store, on the agent's Unix socket only.
#[allow(clippy::all, missing_docs)]
pub mod images {
    tonic::include_proto!("shoal.images");
}
