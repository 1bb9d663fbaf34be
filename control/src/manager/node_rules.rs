//! Swarm's refusals for node changes (`node demote`, `node rm`), decided on
//! the current objects.

use crate::objects::{Node, NodeState, Role};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeRuleError {
    #[error("node {0} is not down and can't be removed; stop it first, or use --force")]
    NotDown(String),
    #[error("node {0} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal")]
    IsManager(String),
    #[error("can't remove or demote node {0}: it is the last manager of the swarm")]
    LastManager(String),
    #[error("can't demote node {id}: demoting it would leave {left} of {managers} managers and lose quorum; the others must be reachable first")]
    WouldLoseQuorum {
        id: String,
        left: usize,
        managers: usize,
    },
}

/// `node demote`: never the last manager; never if the remaining reachable
/// managers would not be a majority of the new group.
pub fn check_demote(
    node: &Node,
    all: &[Node],
    reachable_managers: usize,
) -> Result<(), NodeRuleError> {
    let managers = all.iter().filter(|n| n.role == Role::Manager).count();
    if node.role != Role::Manager {
        return Ok(());
    }
    if managers <= 1 {
        return Err(NodeRuleError::LastManager(node.id.clone()));
    }
    let left = managers - 1;
    let reachable_after = reachable_managers.saturating_sub(1);
    if reachable_after < left / 2 + 1 {
        return Err(NodeRuleError::WouldLoseQuorum {
            id: node.id.clone(),
            left: reachable_after,
            managers: left,
        });
    }
    Ok(())
}

/// `node rm`: a manager must be demoted first (even with --force, as in
/// Swarm); a node that is not down needs --force.
pub fn check_remove(node: &Node, all: &[Node], force: bool) -> Result<(), NodeRuleError> {
    if node.role == Role::Manager {
        let managers = all.iter().filter(|n| n.role == Role::Manager).count();
        if managers <= 1 {
            return Err(NodeRuleError::LastManager(node.id.clone()));
        }
        return Err(NodeRuleError::IsManager(node.id.clone()));
    }
    if node.state != NodeState::Down && !force {
        return Err(NodeRuleError::NotDown(node.id.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Availability;

    fn node(id: &str, role: Role, state: NodeState) -> Node {
        Node {
            id: id.into(),
            hostname: id.into(),
            addr: "198.18.0.1".into(),
            listen_port: 0,
            role,
            availability: Availability::Active,
            labels: Default::default(),
            state,
            raft_id: None,
            resources: Default::default(),
            created_at: 0,
            updated_at: 0,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        }
    }

    #[test]
    fn remove_follows_swarm() {
        let m1 = node("m1", Role::Manager, NodeState::Ready);
        let m2 = node("m2", Role::Manager, NodeState::Ready);
        let w_up = node("w1", Role::Worker, NodeState::Ready);
        let w_down = node("w2", Role::Worker, NodeState::Down);
        let all = vec![m1.clone(), m2.clone(), w_up.clone(), w_down.clone()];
        assert_eq!(
            check_remove(&w_up, &all, false),
            Err(NodeRuleError::NotDown("w1".into()))
        );
        assert_eq!(check_remove(&w_up, &all, true), Ok(()));
        assert_eq!(check_remove(&w_down, &all, false), Ok(()));
        assert_eq!(
            check_remove(&m2, &all, true),
            Err(NodeRuleError::IsManager("m2".into()))
        );
        assert_eq!(
            check_remove(&m1, std::slice::from_ref(&m1), true),
            Err(NodeRuleError::LastManager("m1".into()))
        );
    }

    #[test]
    fn demote_keeps_a_majority() {
        let ms: Vec<Node> = (1..=3)
            .map(|i| node(&format!("m{i}"), Role::Manager, NodeState::Ready))
            .collect();
        assert_eq!(check_demote(&ms[0], &ms, 3), Ok(()));
        // 3 managers, 2 reachable: demoting a reachable one leaves 1 of 2.
        assert!(matches!(
            check_demote(&ms[0], &ms, 2),
            Err(NodeRuleError::WouldLoseQuorum { .. })
        ));
        assert_eq!(
            check_demote(&ms[0], &ms[..1], 1),
            Err(NodeRuleError::LastManager("m1".into()))
        );
        let w = node("w", Role::Worker, NodeState::Ready);
        assert_eq!(check_demote(&w, &ms, 3), Ok(()));
    }
}
