//! The adversary suite: the swarm attacked as someone on its network, a
//! local user, or a member gone bad would, on namespaced hosts with the real
//! `shoal` binary and `shoal-adversary` (built with the workspace). Every
//! test here failed on the code before issue #12's fixes, except where its
//! doc says the finding was not real.
//!
//! - `raft`: Raft calls with no certificate, a worker's, another manager's
//!   identity, a demoted manager's and a removed node's certificate are all
//!   refused, and the leader keeps its term; Control calls with a demoted
//!   manager's kept certificate (at once) and a removed node's likewise.
//! - `gossip`: idle connection floods on 7946 and the metrics port; forged
//!   gossip records in another node's name.
//! - `manager`: publishing the ports nodes need (and a node's configured
//!   `--listen-port`), a huge `service scale` (refused at once, the leader
//!   answering), a removed node's gossip (refused within a second in its
//!   own name; its saved key opens nothing once the rotation retires it).
//! - `disk`: the state dir's modes after init, join, renewal and autolock;
//!   a crash at every key write step; task logs capped; a removed network's
//!   namespace not pinned by tasks.
//! - `exhaustion`: a crash-looping service on a /28 keeps the network's
//!   addresses.

mod disk;
mod exhaustion;
mod gossip;
mod manager;
mod raft;
mod support;
