//! Choosing among the nodes that fit: each placement preference narrows them
//! to the label group holding the fewest tasks of the service, then the
//! strategy (spread or binpack) picks one node of what is left.

use std::cmp::Ordering;

use crate::objects::{spread_label, Strategy};

use super::filter::Demand;
use super::labels::LabelIndex;
use super::NodeLoad;

/// Keeps in `candidates` only the nodes of the group each
/// `spread=node.labels.KEY` preference chooses, in turn (Swarm's tree).
///
/// Nodes are grouped by the label's value, nodes without the label forming
/// a group of their own; the group with the fewest live tasks of the service
/// wins, ties going to the smallest value (the unlabelled group first).
/// Preferences of another form are skipped: spec validation refuses them.
/// `labels` must hold a column for every preference's label.
pub(super) fn narrow_by_preferences(
    candidates: &mut Vec<u32>,
    preferences: &[String],
    labels: &LabelIndex,
    service_tasks: &[u32],
) {
    // Per group (label rank): the service's tasks on its candidates; `None`
    // for a group without candidates.
    let mut groups: Vec<Option<u64>> = Vec::new();
    for preference in preferences {
        if candidates.len() <= 1 {
            return;
        }
        let Some(column) = spread_label(preference)
            .ok()
            .and_then(|key| labels.column(key))
        else {
            continue;
        };
        groups.clear();
        groups.resize(column.groups(), None);
        for &i in candidates.iter() {
            let tasks = groups[column.rank(i) as usize].get_or_insert(0);
            *tasks += u64::from(service_tasks[i as usize]);
        }
        // `min_by_key` keeps the first, lowest rank, of equal groups.
        let chosen = groups
            .iter()
            .enumerate()
            .filter_map(|(rank, tasks)| tasks.map(|t| (rank as u32, t)))
            .min_by_key(|&(_, tasks)| tasks)
            .map(|(rank, _)| rank);
        if let Some(chosen) = chosen {
            candidates.retain(|&i| column.rank(i) == chosen);
        }
    }
}

/// The node `strategy` picks among `candidates`; `None` only when there are
/// none. Every tie ends on the node id, so the choice is deterministic:
/// `candidates` are in index order, which is node id order, and the first of
/// equals wins.
///
/// - Spread: fewest live tasks of the service, then fewest live tasks.
/// - Binpack: fullest by reservation once the task is placed (the larger of
///   its CPU and memory shares), then most live tasks, so that even tasks
///   reserving nothing fill one node first.
pub(super) fn pick(
    strategy: Strategy,
    candidates: &[u32],
    loads: &[NodeLoad],
    service_tasks: &[u32],
    demand: &Demand<'_>,
) -> Option<u32> {
    let nodes = candidates.iter().copied();
    match strategy {
        // `min_by_key` and `min_by` keep the first of equal elements.
        Strategy::Spread => {
            nodes.min_by_key(|&i| (service_tasks[i as usize], loads[i as usize].live_tasks))
        }
        Strategy::Binpack => nodes.min_by(|&a, &b| {
            let (a, b) = (&loads[a as usize], &loads[b as usize]);
            fullness(b, demand)
                .cmp(&fullness(a, demand))
                .then(b.live_tasks.cmp(&a.live_tasks))
        }),
    }
}

/// How full a node would be with the task on it: the larger of its CPU and
/// memory shares; a resource the node reports no capacity for counts as 0.
fn fullness(load: &NodeLoad, demand: &Demand<'_>) -> Share {
    let capacity = &load.capacity;
    let cpu = Share::of(
        load.reserved_nano_cpus.saturating_add(demand.nano_cpus),
        capacity.nano_cpus,
    );
    let memory = Share::of(
        load.reserved_memory.saturating_add(demand.memory_bytes),
        capacity.memory_bytes,
    );
    cpu.max(memory)
}

/// `used / capacity`, compared exactly (no floating point, so equal shares
/// tie and fall through to the next rule).
#[derive(Clone, Copy, Debug)]
struct Share {
    used: u128,
    capacity: u128,
}

impl Share {
    fn of(used: u64, capacity: u64) -> Share {
        if capacity == 0 {
            Share {
                used: 0,
                capacity: 1,
            }
        } else {
            Share {
                used: u128::from(used),
                capacity: u128::from(capacity),
            }
        }
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Share) -> Ordering {
        // Both sides are below 2^64 * 2^64, so the products cannot overflow.
        (self.used * other.capacity).cmp(&(other.used * self.capacity))
    }
}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Share) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Share) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Share {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_compare_exactly() {
        assert_eq!(Share::of(1, 2), Share::of(2, 4));
        assert!(Share::of(1, 3) < Share::of(1, 2));
        assert_eq!(Share::of(5, 0), Share::of(0, 7));
        assert!(Share::of(u64::MAX, u64::MAX) > Share::of(u64::MAX - 1, u64::MAX));
    }
}
