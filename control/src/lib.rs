//! shoal's control plane: what managers hold and decide.
//!
//! - [`objects`]: the swarm's objects (nodes, the cluster, networks,
//!   services, tasks) with their validation, ids and lookup.
//! - [`api`]: the requests and answers clients and nodes exchange.
//! - [`manager`]: the manager core, where every request is decided
//!   (admission, authorization, the dispatcher, the orchestrator driver,
//!   the log broker), on a store trait.
//! - [`orchestrator`] and [`scheduler`]: the pure desired-state pass.
//! - [`compose`]: Compose files read into a typed model (for stacks).
//! - [`engine`]: the Docker Engine API's objects and filters, in Docker's
//!   JSON shape.
//! - [`stack`]: `stack deploy`'s conversion of a compose stack to Docker's
//!   service specs, and its plan against what the cluster has.
//! - [`store`] and [`raft`]: the replicated store (openraft on redb) and its
//!   gRPC transport; [`ca`]: certificates, tokens, mTLS, sealing;
//!   [`proto`]: the gRPC services and the error mapping to statuses.
//! - [`error_chain`]: how every error is printed, each cause once.
//!
//! This crate never touches netlink, eBPF or processes: it is pure state and
//! logic (plus the managers' own RPC), so it can be tested and simulated at
//! scale without root.
#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod compose;
pub mod engine;
pub mod error_chain;
pub mod hex;
pub mod manager;
pub mod objects;
pub mod orchestrator;
pub mod proto;
pub mod raft;
pub mod scheduler;
pub mod stack;
pub mod store;
