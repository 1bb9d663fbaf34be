//! Nodes of a swarm: identity, role, availability, labels and, for managers,
//! their place in the Raft group.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

/// A new random node id: 25 characters of base36, from 128 random bits.
pub fn new_node_id(random: u128) -> String {
    to_base36(random, 25)
}

/// `value` in lowercase base36, left-padded with zeros to `width`.
pub fn to_base36(mut value: u128, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(width);
    while value > 0 {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_25_base36_chars() {
        assert_eq!(new_node_id(0).len(), 25);
        assert_eq!(new_node_id(u128::MAX).len(), 25);
        assert!(new_node_id(u128::MAX)
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_eq!(to_base36(35, 2), "0z");
    }

    #[test]
    fn parses_docker_words() {
        assert_eq!("drain".parse::<Availability>(), Ok(Availability::Drain));
        assert_eq!("manager".parse::<Role>(), Ok(Role::Manager));
        assert!("boss".parse::<Role>().is_err());
    }
}
