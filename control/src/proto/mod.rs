//! Generated gRPC code for every service in `control/proto/`.
#![allow(clippy::all, missing_docs)]

/// The CLI-facing `Control` service.
pub mod control {
    tonic::include_proto!("shoal.control");
}

/// Raft between managers (`RaftNode` in `crate::raft` serves and calls it).
pub mod raft {
    tonic::include_proto!("shoal.raft");
}
