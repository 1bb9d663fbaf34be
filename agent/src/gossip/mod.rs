//! Gossip on port 7946: SWIM membership (foca) over UDP, full-state sync over
//! TCP, and per-network endpoint tables (task id, IP, MAC, VTEP, service,
//! published ports) with owners, versions and tombstones. Every message is
//! authenticated and encrypted with the cluster's gossip key.
//!
//! The core is I/O-free (codec, tables, membership driver, the replica that
//! joins them), so the same code runs in the agent (`service`, over
//! `transport`) and in a deterministic in-process simulation (`sim`). It
//! never programs the kernel: the overlay and the mesh read the tables.

pub mod app;
pub mod codec;
pub mod membership;
pub mod node_id;
pub mod replica;
pub mod service;
pub mod sim;
pub mod table;
pub mod transport;
