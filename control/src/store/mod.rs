//! The managers' replicated store: objects by kind (nodes, the cluster, later
//! networks, services and tasks), changed only through [`Command`]s that go
//! through the Raft log, and kept durably in one redb file per manager.
//!
//! This module is storage only: it never talks to the network (see
//! [`crate::raft`]) and never touches netlink, eBPF or processes. Every value
//! it writes passes through an [`AtRest`] sealer (autolock).

mod at_rest;
mod command;
pub(crate) mod db;
mod error;
mod log_store;
mod objects;
mod recovery;
pub(crate) mod state_machine;
pub mod types;

pub use at_rest::{AtRest, Plain};
pub use command::{Command, Response};
pub use db::STORE_FILE;
pub use error::StoreError;
pub use log_store::LogStore;
pub use objects::{Objects, Versioned};
pub use recovery::{force_new_cluster, NewCluster};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use types::TypeConfig;

/// Object kinds in use.
pub mod kind {
    pub const NODE: &str = "node";
    pub const CLUSTER: &str = "cluster";
    pub const NETWORK: &str = "network";
    pub const SERVICE: &str = "service";
    pub const TASK: &str = "task";
}
