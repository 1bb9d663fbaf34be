//! The manager core: everything a manager decides, in one place.
//!
//! - [`Manager::handle`] answers every `Control` request: the caller is
//!   authorized against the store ([`authorize`]), reads answer from this
//!   manager's copy, and the rest is decided on the leader (forwarded there
//!   when this manager is not it). [`Manager::decide`] is the one match
//!   where each request is decided; the handlers are by object: `nodes`,
//!   `swarm` (the cluster object), `networks`, `services`, `views` (reads).
//! - The dispatcher ([`Manager::heartbeat`], `dispatcher`): heartbeats,
//!   task reports, assignments, and the down detector.
//! - The orchestrator driver ([`Manager::orchestrate_once`]): one pure
//!   `orchestrator::reconcile` pass on a snapshot, committed in batches.
//! - The log broker of `service logs` (`logs`, `broker`).
//! - Joins and certificate renewals (`membership`).
//!
//! It reaches the store through [`Store`] and other managers through
//! [`Link`], and is unit-tested on a [`MemStore`]. It must never open a
//! socket, serve gRPC, or touch netlink, eBPF or processes: the daemon
//! wires it to tonic, the Unix socket and the kernel-facing parts.

mod authz;
mod broker;
mod dispatcher;
mod error;
mod gossip;
mod link;
mod logs;
mod membership;
mod networks;
mod node_rules;
mod nodes;
mod orchestrate;
mod payloads;
mod reach;
mod requests;
mod services;
mod store;
mod swarm;
mod views;

#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use authz::{authorize, Call, Caller};
pub use broker::{BrokerError, LogBroker};
pub use dispatcher::{
    apply_report, bounded_resources, GossipView, MAX_HEARTBEAT_ANSWER_BYTES,
    MAX_HEARTBEAT_MESSAGE_BYTES, MAX_NODE_CPUS, MAX_NODE_MEMORY_BYTES,
};
pub use error::{no_quorum_message, Denied, ErrorCode, ManagerError};
pub use gossip::{gossip_peers, rotation_message, GOSSIP_PEERS};
pub use link::{Link, NoLink};
pub use node_rules::{check_demote, check_remove, NodeRuleError};
pub use reach::Reach;
pub use store::{Leader, MemStore, Store, WriteFailure};
pub use swarm::unlock_instructions;

use crate::api::Reachability;
use crate::objects::{Cluster, Node, Role, CLUSTER_ID};
use crate::store::{Command, Object, Objects, Response};

/// This manager, as the core needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerIdentity {
    pub node_id: String,
    pub cluster_id: String,
    /// The advertise address (an IP).
    pub addr: String,
    /// The manager API port (every manager uses the same).
    pub listen_port: u16,
    pub raft_id: u64,
}

impl ManagerIdentity {
    /// This manager's API address.
    pub fn api_addr(&self) -> String {
        format!("{}:{}", self.addr, self.listen_port)
    }
}

/// A running manager's decisions, on store `S`, reaching other managers
/// through `L`.
pub struct Manager<S, L> {
    store: S,
    link: L,
    me: ManagerIdentity,
    reach: Reach,
    gossip: GossipView,
    dispatch: Mutex<dispatcher::Dispatch>,
    logs: logs::LogExchange,
}

impl<S: Store, L: Link> Manager<S, L> {
    /// `gossip` is this node's gossip view, kept by its data plane; `reach`
    /// is fed by the daemon's prober of the other managers.
    pub fn new(store: S, link: L, me: ManagerIdentity, reach: Reach, gossip: GossipView) -> Self {
        Manager {
            store,
            link,
            me,
            reach,
            gossip,
            dispatch: Mutex::default(),
            logs: logs::LogExchange::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn me(&self) -> &ManagerIdentity {
        &self.me
    }

    pub fn reach(&self) -> &Reach {
        &self.reach
    }

    fn objects(&self) -> Objects {
        self.store.read()
    }

    /// Every object of `T`'s kind; unreadable ones are logged and skipped
    /// (one damaged object must not stop the manager deciding on the rest).
    fn all<T: Object>(&self, objects: &Objects) -> Vec<T> {
        match objects.all::<T>() {
            Ok(all) => all,
            Err(e) => {
                tracing::error!("unreadable {} objects: {e}", T::KIND);
                Vec::new()
            }
        }
    }

    /// Every node, by hostname.
    pub fn nodes(&self) -> Vec<Node> {
        let mut nodes: Vec<Node> = self.all(&self.objects());
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        nodes
    }

    /// The cluster object.
    pub fn cluster(&self) -> Result<Cluster, ManagerError> {
        Ok(self.versioned_cluster()?.0)
    }

    fn versioned_cluster(&self) -> Result<(Cluster, u64), ManagerError> {
        self.objects()
            .one::<Cluster>(CLUSTER_ID)
            .map_err(ManagerError::store)?
            .map(|v| (v.value, v.version))
            .ok_or(ManagerError::NoCluster)
    }

    /// API addresses of the managers in the store.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.nodes()
            .iter()
            .filter(|n| n.role == Role::Manager)
            .map(|n| self.api_addr_of(n))
            .collect()
    }

    /// The address `node`'s manager API listens on: its own `--listen-port`
    /// as recorded in the store (this manager's, for a node recorded before
    /// the port was kept).
    fn api_addr_of(&self, node: &Node) -> String {
        let port = match node.listen_port {
            0 => self.me.listen_port,
            port => port,
        };
        format!("{}:{port}", node.addr)
    }

    /// The managers' API addresses with the leader's first, so nodes try it
    /// before the others.
    pub fn managers_leader_first(&self) -> Vec<String> {
        let mut managers = self.manager_addrs();
        let leader = self.leader_addr();
        managers.sort_by_key(|a| Some(a) != leader.as_ref());
        managers
    }

    /// The leader's API address, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        self.store.leader().map(|l| l.addr)
    }

    pub fn is_leader(&self) -> bool {
        self.store
            .leader()
            .is_some_and(|l| l.raft_id == self.me.raft_id)
    }

    /// The error a write gets without quorum, counting the managers this
    /// one reaches.
    fn quorum_error(&self) -> ManagerError {
        let managers = self.manager_addrs();
        let reachable = self.reach.count(&managers, &self.me.api_addr());
        ManagerError::NoQuorum {
            reachable,
            managers: managers.len().max(1),
        }
    }

    /// [`authorize`], with one care: only the leader's store is sure a node
    /// is gone (a follower's may lag, a new manager's may still be empty),
    /// so a follower that does not know the caller sends it to the leader
    /// rather than telling it it was removed.
    fn authorize_here(
        &self,
        caller: &Caller,
        call: Call<'_>,
        objects: &Objects,
    ) -> Result<(), ManagerError> {
        authorize(caller, call, objects).map_err(|e| self.judge_removal(e))
    }

    /// That node `id` is not in this manager's store, judged as above.
    fn not_in_store(&self, id: &str) -> ManagerError {
        self.judge_removal(
            Denied::Removed {
                node: id.to_string(),
            }
            .into(),
        )
    }

    fn judge_removal(&self, e: ManagerError) -> ManagerError {
        match e {
            ManagerError::Denied(Denied::Removed { node }) if !self.is_leader() => {
                ManagerError::NotKnownHere { node }
            }
            other => other,
        }
    }

    /// How a manager looks to others: the leader, and reachable or not.
    fn manager_status(&self, node: &Node) -> Option<(bool, Reachability)> {
        (node.role == Role::Manager).then(|| {
            let addr = self.api_addr_of(node);
            let leader = self.leader_addr().is_some_and(|l| l == addr);
            (leader, self.reach.of(&addr, &self.me.api_addr()))
        })
    }

    /// Commits `cmd` through the store (this manager must be the leader).
    async fn submit(&self, cmd: Command) -> Result<Response, ManagerError> {
        self.store.write(cmd).await.map_err(|e| match e {
            WriteFailure::NotLeader => ManagerError::LeaderMoved,
            WriteFailure::NoQuorum => self.quorum_error(),
            WriteFailure::Rejected(m) => ManagerError::Rejected(m),
            WriteFailure::Membership(m) => ManagerError::Membership(m),
            WriteFailure::Stopped(m) => ManagerError::Store(m),
        })
    }

    /// Commits `commands` as one write; a conflict on any of them is
    /// `conflict`.
    async fn submit_all(
        &self,
        mut commands: Vec<Command>,
        conflict: impl FnOnce(&str) -> ManagerError,
    ) -> Result<(), ManagerError> {
        let command = match commands.len() {
            0 => return Ok(()),
            1 => commands.remove(0),
            _ => Command::Batch(commands),
        };
        match self.submit(command).await? {
            Response::Conflict { kind, .. } => Err(conflict(&kind)),
            Response::Ok { .. } | Response::NotFound { .. } => Ok(()),
        }
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
