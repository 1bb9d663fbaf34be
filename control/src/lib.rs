//! shoal's control plane: the objects managers hold (networks, endpoints, and
//! later nodes, services and tasks) and the decisions made on them.
//!
//! This crate never touches netlink, eBPF or processes: it is pure state and
//! logic, so it can be tested and simulated at scale without root.
#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod compose;
pub mod engine;
pub mod hex;
pub mod objects;
pub mod orchestrator;
pub mod proto;
pub mod raft;
pub mod scheduler;
pub mod store;
