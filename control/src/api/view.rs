//! How a node is shown: Docker's `node ls` columns and `node inspect` JSON
//! shape, so `--format '{{ .ManagerStatus.Reachability }}'` works as in Swarm.

use serde::{Deserialize, Serialize};

use crate::objects::{Availability, Node, NodeState, Role};

/// A manager's reachability as the answering manager sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Reachable,
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    pub leader: bool,
    pub reachability: Reachability,
    pub addr: String,
}

/// `node inspect` output (Docker's field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeView {
    #[serde(rename = "ID")]
    pub id: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub spec: NodeSpecView,
    pub description: DescriptionView,
    pub status: StatusView,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manager_status: Option<ManagerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpecView {
    pub role: Role,
    pub availability: Availability,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescriptionView {
    pub hostname: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusView {
    pub state: String,
    pub addr: String,
}

impl NodeView {
    /// `manager` is `Some((is_leader, reachability))` for managers.
    pub fn new(node: &Node, manager: Option<(bool, Reachability)>) -> Self {
        NodeView {
            id: node.id.clone(),
            created_at: node.created_at,
            updated_at: node.updated_at,
            spec: NodeSpecView {
                role: node.role,
                availability: node.availability,
                labels: node.labels.clone(),
            },
            description: DescriptionView {
                hostname: node.hostname.clone(),
            },
            status: StatusView {
                state: node.state.to_string().to_lowercase(),
                addr: node.addr.clone(),
            },
            manager_status: manager.map(|(leader, reachability)| ManagerStatus {
                leader,
                reachability,
                addr: node.addr.clone(),
            }),
        }
    }

    /// The MANAGER STATUS column: Leader, Reachable, Unreachable or empty.
    pub fn manager_column(&self) -> &'static str {
        match &self.manager_status {
            Some(m) if m.leader => "Leader",
            Some(m) if m.reachability == Reachability::Reachable => "Reachable",
            Some(_) => "Unreachable",
            None => "",
        }
    }

    /// The STATUS column.
    pub fn status_column(&self) -> String {
        let state: NodeState = match self.status.state.as_str() {
            "ready" => NodeState::Ready,
            "down" => NodeState::Down,
            _ => NodeState::Unknown,
        };
        state.to_string()
    }
}
