//! `node update|promote|demote|rm` and the leader's side of a new manager
//! joining the Raft group. Every node change is a read-modify-write that
//! reads again when another write to the node landed in between: the
//! cluster's own writes (a heartbeat marking the node Ready, the down
//! detector) must never make a user's command fail.

use super::node_rules::{check_demote, check_remove};
use super::{now_secs, Link, Manager, ManagerError, Store};
use crate::api::ApiResponse;
use crate::error_chain::ErrorChain;
use crate::objects::{Availability, LookupError, Named, Node, Role};
use crate::store::{Command, Response};

/// How many times a node change reads again after losing a race.
const NODE_ATTEMPTS: usize = 5;

impl<S: Store, L: Link> Manager<S, L> {
    /// Applies `change` to node `id` and commits it; `change` answers
    /// whether anything needs writing. When another write to the node lands
    /// between the read and the write, it reads and applies `change` again.
    /// Returns the node as stored.
    pub(super) async fn modify_node(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Node) -> Result<bool, ManagerError>,
    ) -> Result<Node, ManagerError> {
        for _ in 0..NODE_ATTEMPTS {
            let Some(stored) = self
                .objects()
                .one::<Node>(id)
                .map_err(ManagerError::store)?
            else {
                return Err(LookupError::NotFound {
                    kind: Node::WHAT,
                    name: id.to_string(),
                }
                .into());
            };
            let mut node = stored.value;
            if !change(&mut node)? {
                return Ok(node);
            }
            node.updated_at = now_secs();
            let put = Command::put(&node, Some(stored.version)).map_err(ManagerError::store)?;
            match self.submit(put).await? {
                Response::Conflict { .. } => continue,
                Response::Ok { .. } | Response::NotFound { .. } => return Ok(node),
            }
        }
        Err(ManagerError::Changed {
            kind: Node::WHAT,
            name: id.to_string(),
        })
    }

    /// `node update`.
    pub(super) async fn update_node_spec(
        &self,
        name: &str,
        availability: Option<Availability>,
        label_add: Vec<(String, String)>,
        label_rm: Vec<String>,
    ) -> Result<ApiResponse, ManagerError> {
        let node = self.find_node(name)?;
        let updated = self
            .modify_node(&node.id, |node| {
                if let Some(a) = availability {
                    node.availability = a;
                }
                for key in &label_rm {
                    if node.labels.remove(key).is_none() {
                        return Err(ManagerError::NoSuchLabel(key.clone()));
                    }
                }
                node.labels.extend(label_add.iter().cloned());
                Ok(true)
            })
            .await?;
        Ok(ApiResponse::Done {
            message: updated.id,
        })
    }

    /// `node promote` and `node demote`.
    pub(super) async fn set_role(
        &self,
        name: &str,
        role: Role,
    ) -> Result<ApiResponse, ManagerError> {
        let node = self.find_node(name)?;
        if node.role == role {
            let what = match role {
                Role::Manager => "already a manager",
                Role::Worker => "already a worker",
            };
            return Ok(ApiResponse::Done {
                message: format!("Node {} is {what}.", node.id),
            });
        }
        let verb = match role {
            Role::Manager => {
                self.modify_node(&node.id, |n| {
                    if n.role == Role::Manager {
                        return Ok(false);
                    }
                    n.role = Role::Manager;
                    n.raft_id = Some(rand::random::<u64>() >> 1);
                    Ok(true)
                })
                .await?;
                "promoted to a manager"
            }
            Role::Worker => {
                let reachable = self.reach.count(&self.manager_addrs(), &self.me.api_addr());
                check_demote(&node, &self.nodes(), reachable)?;
                if let Some(raft_id) = node.raft_id {
                    self.store
                        .remove_voter(raft_id)
                        .await
                        .map_err(|e| ManagerError::Membership(e.chain().to_string()))?;
                }
                self.modify_node(&node.id, |n| {
                    let changed = n.role != Role::Worker || n.raft_id.is_some();
                    n.role = Role::Worker;
                    n.raft_id = None;
                    Ok(changed)
                })
                .await?;
                // Its copy of the store held every key: a new one.
                self.rotate_gossip_key_after(&node.id, "demoted").await?;
                "demoted in the swarm"
            }
        };
        Ok(ApiResponse::Done {
            message: format!("Node {} {verb}.", node.id),
        })
    }

    /// `node rm [--force]`, refused by Swarm's rules ([`check_remove`]) on
    /// a fresh read each attempt.
    pub(super) async fn remove_node(
        &self,
        name: &str,
        force: bool,
    ) -> Result<ApiResponse, ManagerError> {
        let id = self.find_node(name)?.id;
        for _ in 0..NODE_ATTEMPTS {
            let objects = self.objects();
            let node = self.find_node(&id)?;
            check_remove(&node, &self.nodes(), force)?;
            let version = objects.version_of::<Node>(&id);
            // One write: the node goes, and so does (on the rotation's
            // schedule) the gossip key it holds.
            let (rotate, rotation) = self.gossip_rotation(&objects, Some(&id))?;
            let remove = Command::Batch(vec![Command::remove::<Node>(&id, Some(version)), rotate]);
            match self.submit(remove).await? {
                Response::Conflict { .. } => continue,
                Response::Ok { .. } => {
                    tracing::info!(
                        "node {id} removed; gossip key {} replaces the key it held",
                        rotation.id
                    );
                    return Ok(ApiResponse::Done { message: id });
                }
                Response::NotFound { .. } => {
                    return Err(LookupError::NotFound {
                        kind: Node::WHAT,
                        name: name.to_string(),
                    }
                    .into())
                }
            }
        }
        Err(ManagerError::Changed {
            kind: Node::WHAT,
            name: id,
        })
    }

    /// Rotates the gossip key after `node` left a role that held it.
    async fn rotate_gossip_key_after(&self, node: &str, what: &str) -> Result<(), ManagerError> {
        for _ in 0..NODE_ATTEMPTS {
            let (rotate, rotation) = self.gossip_rotation(&self.objects(), None)?;
            if let Response::Ok { .. } = self.submit(rotate).await? {
                tracing::info!(
                    "node {node} {what}; gossip key {} replaces the key it held",
                    rotation.id
                );
                return Ok(());
            }
        }
        Err(ManagerError::Changed {
            kind: crate::store::kind::GOSSIP_KEYRING,
            name: "gossip keys".into(),
        })
    }

    /// A node that joined or was promoted as a manager is ready: add it to
    /// the Raft group.
    pub(super) async fn add_manager(&self, node_id: &str) -> Result<ApiResponse, ManagerError> {
        let node = self.find_node(node_id)?;
        let raft_id = node
            .raft_id
            .filter(|_| node.role == Role::Manager)
            .ok_or_else(|| ManagerError::NotAManager(node_id.to_string()))?;
        self.store
            .add_voter(raft_id, &self.api_addr_of(&node))
            .await
            .map_err(|e| ManagerError::Membership(e.chain().to_string()))?;
        Ok(ApiResponse::Done {
            message: format!("node {node_id} joined the managers"),
        })
    }
}
