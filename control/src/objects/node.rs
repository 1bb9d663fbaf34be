//! Nodes of a swarm: identity, role, availability, labels and, for managers,
//! their place in the Raft group.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::store::{kind, Object};

/// A node's role, carried in its certificate's OU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

/// Whether the scheduler may place tasks on a node (Swarm's AVAILABILITY).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

/// Whether the managers hear from the node (Swarm's STATUS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Ready,
    Down,
}

/// A node as the managers record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// 25 lowercase base36 characters, like Docker's; also the certificate CN.
    pub id: String,
    pub hostname: String,
    /// The address other nodes reach it on (its `--advertise-addr`).
    pub addr: String,
    /// The port its manager API listens on (`--listen-port`), as it said
    /// when it joined; 0 when not known (recorded before this was kept).
    #[serde(default)]
    pub listen_port: u16,
    pub role: Role,
    #[serde(default)]
    pub availability: Availability,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub state: NodeState,
    /// Set for managers: the node's id in the Raft group.
    #[serde(default)]
    pub raft_id: Option<u64>,
    /// What the node offers to tasks, as its agent reports it.
    #[serde(default)]
    pub resources: NodeResources,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
    /// The networks this node's agent fails to build (network id to its
    /// error), as it last reported; bounded by the leader.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_errors: BTreeMap<String, String>,
    /// The task sandboxes and published ports this node's agent fails to
    /// build, as it last reported; bounded by the leader.
    #[serde(default, skip_serializing_if = "BuildFailures::is_empty")]
    pub build_failures: BuildFailures,
    /// Unix ms until which the node's agent is restarting (it said so in its
    /// last heartbeat): the down detector leaves the node and its tasks
    /// alone until then. Cleared by its next heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting_until_ms: Option<u64>,
}

/// What a node's agent fails to build besides networks, each retried there
/// with backoff (level: an empty value says all is built).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFailures {
    /// Task sandboxes (their interface on a network), by network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandboxes: Vec<SandboxFailure>,
    /// Published ports its load balancer refuses (`8080/tcp` to the error).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, String>,
}

impl BuildFailures {
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.ports.is_empty()
    }
}

/// A task's sandbox a node fails to build on a network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SandboxFailure {
    pub network: String,
    pub task_id: String,
    pub error: String,
}

/// A node's capacity for reservations (Docker's NanoCPUs and MemoryBytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeResources {
    pub nano_cpus: u64,
    pub memory_bytes: u64,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" => Ok(Role::Manager),
            "worker" => Ok(Role::Worker),
            other => Err(format!("invalid role `{other}`: use manager or worker")),
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Availability::Active => "Active",
            Availability::Pause => "Pause",
            Availability::Drain => "Drain",
        })
    }
}

impl FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "active" => Ok(Availability::Active),
            "pause" => Ok(Availability::Pause),
            "drain" => Ok(Availability::Drain),
            other => Err(format!(
                "invalid availability `{other}`: use active, pause or drain"
            )),
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Unknown => "Unknown",
            NodeState::Ready => "Ready",
            NodeState::Down => "Down",
        })
    }
}

impl Object for Node {
    const KIND: &'static str = kind::NODE;
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_words() {
        assert_eq!("drain".parse::<Availability>(), Ok(Availability::Drain));
        assert_eq!("manager".parse::<Role>(), Ok(Role::Manager));
        assert!("boss".parse::<Role>().is_err());
    }
}
