//! Where a task belongs in its service: a replica slot, or a node for a
//! global service. The pass and the rolling updates both count by it.

use crate::objects::Task;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Key {
    Slot(u64),
    Node(String),
}

pub(super) fn key_of(task: &Task) -> Key {
    if task.slot > 0 {
        Key::Slot(task.slot)
    } else {
        Key::Node(task.node_id.clone().unwrap_or_default())
    }
}
