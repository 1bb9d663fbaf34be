//! The desired-state loop's decisions: from the nodes, networks, services
//! and tasks in the store, the task changes that make the cluster converge.
//! One pass ([`reconcile`]) orchestrates every service (replicas or one task
//! per node, restarts, replacement of tasks on down or drained nodes,
//! rolling updates and rollbacks), allocates addresses to new tasks and
//! schedules them. It is pure: the manager's loop reads a snapshot, calls
//! it and commits the [`Plan`]; running it again on the result changes
//! nothing (level-triggered).

mod addresses;
mod admission;
mod pass;
mod reserved;
mod slots;
mod update;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod update_tests;

pub use addresses::{
    assign_vips, quarantine_deleted, AddressBook, AddressError, AddressQuarantine, AddressUsage,
    ADDRESS_QUARANTINE_MS,
};
pub use admission::{admit, desired_tasks, AdmissionError, AUTO_PORTS};
pub use pass::NEW_TASKS_PER_PASS;
pub use reserved::{reserved_port_in, reserved_ports, ReservedPort};
pub use update::rolled_back;

use crate::objects::{Network, Node, Service, Strategy, Task};

/// Tasks kept per slot (or per node, for global services), the current one
/// included, for `service ps` history; Swarm's default task history limit.
pub const TASK_HISTORY_LIMIT: usize = 5;

/// A consistent snapshot of what the store holds.
pub struct ClusterState<'a> {
    pub nodes: &'a [Node],
    pub networks: &'a [Network],
    pub services: &'a [Service],
    pub tasks: &'a [Task],
    pub quarantines: &'a [AddressQuarantine],
    /// The cluster's scheduling strategy.
    pub strategy: Strategy,
    /// Tasks kept per slot, the current one included; negative keeps all.
    pub task_history_limit: i64,
    /// Unix milliseconds.
    pub now_ms: u64,
}

/// What one pass changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// New or changed tasks, whole.
    pub tasks: Vec<Task>,
    /// Tasks to delete (stopped history beyond the limit, tasks of removed
    /// services).
    pub deleted_tasks: Vec<String>,
    /// Services whose update status changed (or that were rolled back).
    pub services: Vec<Service>,
    /// Quarantines that changed (addresses of deleted tasks).
    pub quarantines: Vec<AddressQuarantine>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.deleted_tasks.is_empty()
            && self.services.is_empty()
            && self.quarantines.is_empty()
    }
}

/// One pass of the orchestrator, allocator and scheduler. `new_id` names new
/// tasks.
pub fn reconcile(state: &ClusterState, new_id: &mut dyn FnMut() -> String) -> Plan {
    pass::Pass::new(state, new_id).run()
}
