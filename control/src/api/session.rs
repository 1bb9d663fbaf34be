//! Payloads of the node-facing services: joining (Ca.Join), renewing a
//! certificate (Ca.Renew) and heartbeats (Dispatcher.Heartbeat).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::logs::{LogChunk, LogFetch};
pub use crate::objects::GossipKey;
use crate::objects::{
    NetworkSpec, NodeResources, PayloadFile, PortConfig, Role, TaskAttachment, TaskSpec, TaskState,
};

/// How often agents heartbeat, and how long managers wait before marking a
/// silent node Down (Swarm: 5 s and ~15 s).
pub const HEARTBEAT_PERIOD_MS: u64 = 500;
pub const DOWN_AFTER_MS: u64 = 2_000;
/// How long a node that gossip still sees alive may stay silent before it
/// is marked Down anyway: heartbeats ride on TCP, and on a lossy link one
/// can be late by more than [`DOWN_AFTER_MS`] while the node is fine.
pub const DOWN_AFTER_IF_ALIVE_MS: u64 = 10_000;
/// The restart window an agent asks for when it stops for a restart or an
/// upgrade (`shoal agent --restart-window`): the managers keep its node and
/// its tasks that long before they mark it Down and replace them.
pub const RESTART_WINDOW_MS: u64 = 30_000;
/// The longest restart window a node may ask for: past it, its tasks are
/// replaced even if it said it would come back.
pub const MAX_RESTART_WINDOW_MS: u64 = 600_000;

/// The port every node gossips on, UDP (SWIM) and TCP (full-state sync), as
/// in Docker's swarm mode.
pub const GOSSIP_PORT: u16 = 7946;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// The node's certificate request; the CA signs it with the role the
    /// token grants.
    pub csr_pem: String,
    pub hostname: String,
    /// The node's advertise address (an IP).
    pub addr: String,
    /// Port its manager API would listen on (2377).
    pub listen_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    pub cert_pem: String,
    pub ca_pem: String,
    /// Set when joining as a manager.
    pub raft_id: Option<u64>,
    /// `ip:port` of every manager, the leader first when known.
    pub managers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
    pub role: Role,
    pub raft_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: String,
    /// What the node offers to tasks (sent when known).
    #[serde(default)]
    pub resources: Option<NodeResources>,
    /// The state of every task the node holds, each heartbeat (level, not
    /// edge: a lost heartbeat loses nothing).
    #[serde(default)]
    pub tasks: Vec<TaskReport>,
    /// Answers to the log fetches of earlier heartbeat answers.
    #[serde(default)]
    pub logs: Vec<LogChunk>,
    /// The networks the node fails to build, by id, with the error (level:
    /// an empty map says all are built). `None` from older agents.
    #[serde(default)]
    pub network_failures: Option<BTreeMap<String, String>>,
    /// The sandboxes and published ports the node fails to build (level).
    /// `None` from older agents.
    #[serde(default)]
    pub build_failures: Option<crate::objects::BuildFailures>,
    /// Set in the last heartbeat of an agent stopping for a restart (its
    /// tasks keep running): how long, in ms, the managers should wait for
    /// it before marking the node Down (at most [`MAX_RESTART_WINDOW_MS`]).
    #[serde(default)]
    pub restart_window_ms: Option<u64>,
}

/// A node's view of one of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: String,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub err: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A task given to a node: what to run, and whether it should run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: String,
    /// `web.2`.
    pub name: String,
    pub service_id: String,
    pub service_name: String,
    pub desired_state: TaskState,
    pub spec: TaskSpec,
    pub networks: Vec<TaskAttachment>,
    /// The service's published ports, for the task's endpoint records.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// The secrets the task uses, with their data: a node receives a
    /// secret only in the assignment of a task that uses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<PayloadFile>,
    /// The configs the task uses, with their data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<PayloadFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The role the managers hold for this node; a change means the node
    /// must renew its certificate and start or stop its manager parts.
    pub role: Role,
    pub managers: Vec<String>,
    pub period_ms: u64,
    /// Keys and peers for gossip; `None` when the manager could not read
    /// them (the node keeps what it has).
    #[serde(default)]
    pub gossip: Option<GossipConfig>,
    /// Every overlay network of the swarm; `None` when unknown (the node
    /// keeps its last list, so its data plane survives a manager outage).
    #[serde(default)]
    pub networks: Option<Vec<NetworkSpec>>,
    /// Every unfinished task assigned to this node; `None` when unknown
    /// (the node keeps running what it has).
    #[serde(default)]
    pub assignments: Option<Vec<Assignment>>,
    /// The ids of this node's finished tasks the managers still keep (the
    /// tasks' history): the node keeps their logs, for `service logs`,
    /// until they leave this list. `None` when unknown.
    #[serde(default)]
    pub history: Option<Vec<String>>,
    /// Task output the leader wants (`service logs`); answered in the next
    /// heartbeat.
    #[serde(default)]
    pub log_fetches: Vec<LogFetch>,
}

/// What a node needs to take part in gossip, handed out by the managers
/// over the mutually authenticated heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipConfig {
    /// Every key a node must accept (during a rotation, the old and the new).
    pub keys: Vec<GossipKey>,
    /// The id of the key to seal with.
    pub primary: u32,
    /// Gossip addresses (`ip:port`) of other nodes to join through.
    pub peers: Vec<String>,
    /// Ids of nodes removed from the swarm lately: their frames and records
    /// are refused at once, while the keys they held are still phased out.
    #[serde(default)]
    pub refused: Vec<String>,
}
