//! The checks a node must pass to take a task, in Swarm's order: available
//! (Ready and Active), placement constraints, free resources, then host-mode
//! ports no live task on the node publishes yet; and
//! [`Unschedulable`], which counts the nodes each check turned away.

use crate::objects::{Availability, Node, NodeState, Protocol, Role, Task};

use super::labels::{LabelColumn, LabelIndex};
use super::NodeLoad;

/// The first check a node failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rejection {
    /// Down, unknown, paused or drained, or not in the swarm at all.
    Unavailable,
    /// A `--constraint` does not hold.
    Constraints,
    /// Capacity minus reservations is below the task's reservation.
    Resources,
    /// A live task on the node already publishes one of the task's
    /// host-mode ports.
    HostPort,
}

/// Why no node can take a task, as `service ps` shows it:
/// `no suitable node (scheduling constraints not satisfied on 3 nodes; insufficient resources on 1 node)`.
///
/// Each node is counted once, under the first check it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("no suitable node{}", explanation(self))]
pub struct Unschedulable {
    /// Nodes that are down, unknown, paused or drained.
    pub unavailable: usize,
    /// Nodes where a placement constraint does not hold.
    pub constraints: usize,
    /// Nodes without enough unreserved CPU or memory.
    pub resources: usize,
    /// Nodes where a host-mode port of the task is already published.
    pub host_ports: usize,
}

impl Unschedulable {
    pub(super) fn count(&mut self, rejection: Rejection) {
        match rejection {
            Rejection::Unavailable => self.unavailable += 1,
            Rejection::Constraints => self.constraints += 1,
            Rejection::Resources => self.resources += 1,
            Rejection::HostPort => self.host_ports += 1,
        }
    }

    /// How many nodes were looked at and turned away.
    pub fn nodes(&self) -> usize {
        self.unavailable + self.constraints + self.resources + self.host_ports
    }
}

/// ` (reason; reason)`, most frequent reason first (ties in the order
/// constraints, resources, availability), or nothing when no node was seen.
fn explanation(u: &Unschedulable) -> String {
    let mut reasons = [
        (u.constraints, Rejection::Constraints),
        (u.resources, Rejection::Resources),
        (u.host_ports, Rejection::HostPort),
        (u.unavailable, Rejection::Unavailable),
    ];
    reasons.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
    let parts: Vec<String> = reasons
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|&(count, rejection)| reason(count, rejection))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

fn reason(count: usize, rejection: Rejection) -> String {
    let nodes = if count == 1 { "node" } else { "nodes" };
    match rejection {
        Rejection::Constraints => {
            format!("scheduling constraints not satisfied on {count} {nodes}")
        }
        Rejection::Resources => format!("insufficient resources on {count} {nodes}"),
        Rejection::HostPort => format!("host-mode port already in use on {count} {nodes}"),
        Rejection::Unavailable => format!("{count} {nodes} not available for new tasks"),
    }
}

/// What a task asks of a node, read once per placement so the scan over
/// the nodes neither allocates, parses nor looks labels up.
pub(super) struct Demand<'t> {
    constraints: Vec<NodeConstraint<'t>>,
    pub(super) nano_cpus: u64,
    pub(super) memory_bytes: u64,
    host_ports: Vec<(Protocol, u16)>,
}

struct NodeConstraint<'t> {
    field: Field<'t>,
    equal: bool,
    value: &'t str,
}

enum Field<'t> {
    Id,
    Hostname,
    Role,
    /// A node label, by its column; `equal_ranks[rank]` says whether that
    /// value equals the constraint's. No column: no node has the label.
    Label {
        column: Option<&'t LabelColumn>,
        equal_ranks: Vec<bool>,
    },
    /// A key validation should have refused; it holds on no node.
    Unknown,
}

impl<'t> Demand<'t> {
    /// `labels` must hold the column of every label the task's constraints
    /// name (see `Scheduler::prepare_labels`).
    pub(super) fn of(task: &'t Task, labels: &'t LabelIndex) -> Demand<'t> {
        let constraints = task
            .spec
            .placement
            .constraints
            .iter()
            .map(|c| NodeConstraint {
                field: match c.key.as_str() {
                    "node.id" => Field::Id,
                    "node.hostname" => Field::Hostname,
                    "node.role" => Field::Role,
                    key => match key.strip_prefix("node.labels.") {
                        Some(label) if !label.is_empty() => {
                            let column = labels.column(label);
                            Field::Label {
                                column,
                                equal_ranks: column
                                    .map(|column| column.ranks_equal_to(&c.value))
                                    .unwrap_or_default(),
                            }
                        }
                        _ => Field::Unknown,
                    },
                },
                equal: c.equal,
                value: c.value.as_str(),
            })
            .collect();
        let resources = &task.spec.resources;
        Demand {
            constraints,
            nano_cpus: resources.reserve_nano_cpus,
            memory_bytes: resources.reserve_memory,
            host_ports: task
                .host_ports
                .iter()
                .map(|p| (p.protocol, p.published))
                .collect(),
        }
    }

    /// Whether `node`, at `index` and with `load` committed on it, can take
    /// the task now, or the first check it fails.
    pub(super) fn check(&self, index: u32, node: &Node, load: &NodeLoad) -> Result<(), Rejection> {
        if !load.available {
            return Err(Rejection::Unavailable);
        }
        if !self.constraints.iter().all(|c| c.holds_on(index, node)) {
            return Err(Rejection::Constraints);
        }
        let capacity = &load.capacity;
        if !fits(capacity.nano_cpus, load.reserved_nano_cpus, self.nano_cpus)
            || !fits(
                capacity.memory_bytes,
                load.reserved_memory,
                self.memory_bytes,
            )
        {
            return Err(Rejection::Resources);
        }
        if self.host_ports.iter().any(|p| load.host_ports.contains(p)) {
            return Err(Rejection::HostPort);
        }
        Ok(())
    }
}

impl NodeConstraint<'_> {
    /// Swarm's matching: values compare without regard to ASCII case, a
    /// missing label equals nothing (so `!=` on it holds), label keys are
    /// exact.
    fn holds_on(&self, index: u32, node: &Node) -> bool {
        let actual = match &self.field {
            Field::Id => Some(node.id.as_str()),
            Field::Hostname => Some(node.hostname.as_str()),
            Field::Role => Some(match node.role {
                Role::Manager => "manager",
                Role::Worker => "worker",
            }),
            Field::Label {
                column,
                equal_ranks,
            } => {
                let equal = column.is_some_and(|c| equal_ranks[c.rank(index) as usize]);
                return equal == self.equal;
            }
            Field::Unknown => return false,
        };
        let equal = actual.is_some_and(|a| a.eq_ignore_ascii_case(self.value));
        equal == self.equal
    }
}

/// Whether the scheduler may give the node new tasks at all.
pub(super) fn is_available(node: &Node) -> bool {
    node.state == NodeState::Ready && node.availability == Availability::Active
}

/// Whether `want` fits in what `reserved` leaves of `capacity`. A capacity
/// of 0 takes only tasks that reserve nothing.
fn fits(capacity: u64, reserved: u64, want: u64) -> bool {
    want <= capacity.saturating_sub(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_sorted_by_count_and_pluralised() {
        let u = Unschedulable {
            unavailable: 1,
            constraints: 3,
            resources: 1,
            host_ports: 0,
        };
        assert_eq!(
            u.to_string(),
            "no suitable node (scheduling constraints not satisfied on 3 nodes; \
             insufficient resources on 1 node; 1 node not available for new tasks)"
        );
        assert_eq!(u.nodes(), 5);
        let u = Unschedulable {
            unavailable: 2,
            ..Unschedulable::default()
        };
        assert_eq!(
            u.to_string(),
            "no suitable node (2 nodes not available for new tasks)"
        );
        assert_eq!(Unschedulable::default().to_string(), "no suitable node");
    }

    #[test]
    fn zero_capacity_takes_only_zero_reservations() {
        assert!(fits(0, 0, 0));
        assert!(!fits(0, 0, 1));
        assert!(fits(10, 4, 6));
        assert!(!fits(10, 4, 7));
        // Already over-reserved (capacity shrank): nothing more fits.
        assert!(!fits(10, 12, 1));
        assert!(fits(10, 12, 0));
    }
}
