//! The managers' replicated store: objects by kind (nodes, the cluster,
//! networks, services, tasks and the managers' bookkeeping), changed only
//! through [`Command`]s that go through the Raft log, and kept durably in one
//! redb file per manager. Typed access goes through [`Object`].
//!
//! This module is storage only: it never talks to the network (see
//! [`crate::raft`]) and never touches netlink, eBPF or processes. Every value
//! it writes passes through an [`AtRest`] sealer (autolock).

mod at_rest;
mod command;
pub(crate) mod db;
mod error;
mod log_store;
pub(crate) mod objects;
mod recovery;
pub(crate) mod state_machine;
mod typed;
pub mod types;

pub use at_rest::{AtRest, Plain};
pub use command::{Command, Response};
pub use db::STORE_FILE;
pub use error::StoreError;
pub use log_store::LogStore;
pub use objects::{Objects, Versioned};
pub use recovery::{force_new_cluster, NewCluster};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use typed::Object;
pub use types::TypeConfig;

/// Every object kind, named once; each stored type uses its constant as
/// its [`Object::KIND`].
pub mod kind {
    pub const NODE: &str = "node";
    pub const CLUSTER: &str = "cluster";
    pub const NETWORK: &str = "network";
    pub const SERVICE: &str = "service";
    pub const TASK: &str = "task";
    /// Secrets (`secret create`); sealed like every value of the store.
    pub const SECRET: &str = "secret";
    /// Configs (`config create`).
    pub const CONFIG: &str = "config";
    /// The gossip keys added by rotations.
    pub const GOSSIP_KEYRING: &str = "gossip";
    /// Addresses of deleted tasks, per network, until their tombstones expire.
    pub const ADDRESS_QUARANTINE: &str = "address_quarantine";
    /// The guard every change to the set of networks writes.
    pub const NETWORK_GUARD: &str = "network_allocation";
    /// The guard every change to the set of services writes.
    pub const SERVICE_GUARD: &str = "service_allocation";
}
