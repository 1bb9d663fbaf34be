//! Property tests of the scheduler against a plain model: whatever the nodes
//! and tasks, a placement satisfies every filter, no node is ever reserved
//! past its capacity, a refusal counts every node under the right reason,
//! and spread keeps each service balanced.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::fixtures::{constraint, node, running_on, task, CPU, GIB};
use super::*;
use crate::objects::{Availability, NodeState, Role, Strategy, TaskState};

/// A node as generated: state, availability, manager?, zone, disk, CPUs, GiB.
type NodeShape = (
    NodeState,
    Availability,
    bool,
    Option<&'static str>,
    bool,
    u64,
    u64,
);

fn node_shape() -> impl proptest::strategy::Strategy<Value = NodeShape> {
    (
        prop_oneof![
            3 => Just(NodeState::Ready),
            1 => Just(NodeState::Down),
            1 => Just(NodeState::Unknown),
        ],
        prop_oneof![
            3 => Just(Availability::Active),
            1 => Just(Availability::Pause),
            1 => Just(Availability::Drain),
        ],
        any::<bool>(),
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        any::<bool>(),
        prop_oneof![Just(0), Just(1), Just(2), Just(4)],
        prop_oneof![Just(0), Just(1), Just(2), Just(4)],
    )
}

fn build_node(i: usize, shape: &NodeShape) -> Node {
    let &(state, availability, manager, zone, ssd, cpus, gib) = shape;
    let mut n = node(&format!("n{i}"));
    n.state = state;
    n.availability = availability;
    n.role = if manager { Role::Manager } else { Role::Worker };
    if let Some(zone) = zone {
        n.labels.insert("zone".into(), zone.into());
    }
    if ssd {
        n.labels.insert("disk".into(), "ssd".into());
    }
    n.resources.nano_cpus = cpus * CPU;
    n.resources.memory_bytes = gib * GIB;
    n
}

const CONSTRAINTS: &[&str] = &[
    "node.role==manager",
    "node.role!=manager",
    "node.labels.zone==a",
    "node.labels.zone!=a",
    "node.labels.disk==ssd",
    "node.labels.disk!=ssd",
    "node.id==n1",
    "node.id!=n0",
    "node.hostname==host-n2",
    "node.hostname!=host-n3",
];

/// A task to place, or the release of the k-th task placed so far.
#[derive(Clone, Debug)]
enum Op {
    Place {
        service: usize,
        constraints: Vec<usize>,
        half_cpus: u64,
        gib: u64,
        strategy: Option<Strategy>,
        zone_preference: bool,
    },
    Release(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        5 => (
            0..3usize,
            proptest::collection::vec(0..CONSTRAINTS.len(), 0..3),
            0..5u64,
            0..3u64,
            prop_oneof![Just(None), Just(Some(Strategy::Spread)), Just(Some(Strategy::Binpack))],
            any::<bool>(),
        )
            .prop_map(|(service, constraints, half_cpus, gib, strategy, zone_preference)| {
                Op::Place { service, constraints, half_cpus, gib, strategy, zone_preference }
            }),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// The filters written out plainly: the first check `n` fails, if any.
fn model_check(n: &Node, used: (u64, u64), t: &Task) -> Option<Rejection> {
    if n.state != NodeState::Ready || n.availability != Availability::Active {
        return Some(Rejection::Unavailable);
    }
    for c in &t.spec.placement.constraints {
        let actual = match c.key.as_str() {
            "node.id" => Some(n.id.clone()),
            "node.hostname" => Some(n.hostname.clone()),
            "node.role" => Some(n.role.to_string()),
            key => n.labels.get(&key["node.labels.".len()..]).cloned(),
        };
        let equal = actual.map(|a| a.to_lowercase()) == Some(c.value.to_lowercase());
        if equal != c.equal {
            return Some(Rejection::Constraints);
        }
    }
    let r = &t.spec.resources;
    if used.0 + r.reserve_nano_cpus > n.resources.nano_cpus
        || used.1 + r.reserve_memory > n.resources.memory_bytes
    {
        return Some(Rejection::Resources);
    }
    None
}

proptest! {
    #[test]
    fn placements_always_pass_every_filter_and_never_over_reserve(
        shapes in proptest::collection::vec(node_shape(), 0..10),
        existing in proptest::collection::vec((0..10usize, 0..3usize, any::<bool>()), 0..10),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let nodes: Vec<Node> = shapes.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        // Existing tasks: live ones reserve nothing but count; dead ones
        // reserve a lot and must not count.
        let existing: Vec<Task> = existing
            .iter()
            .enumerate()
            .map(|(k, &(n, service, live))| {
                let mut t = running_on(&format!("old{k}"), &format!("s{service}"), &format!("n{n}"));
                if !live {
                    t.status.state = TaskState::Failed;
                    t.spec.resources.reserve_nano_cpus = 100 * CPU;
                }
                t
            })
            .collect();
        let mut s = Scheduler::new(&nodes, &existing);
        let mut used: HashMap<String, (u64, u64)> = HashMap::new();
        let mut placed: Vec<Task> = Vec::new();
        for (k, op) in ops.into_iter().enumerate() {
            match op {
                Op::Release(i) => {
                    if placed.is_empty() {
                        continue;
                    }
                    let t = placed.swap_remove(i % placed.len());
                    let node = s.node_of(&t.id).map(str::to_string);
                    prop_assert!(node.is_some());
                    let entry = used.entry(node.unwrap_or_default()).or_default();
                    entry.0 -= t.spec.resources.reserve_nano_cpus;
                    entry.1 -= t.spec.resources.reserve_memory;
                    s.release(&t);
                    prop_assert_eq!(s.node_of(&t.id), None);
                }
                Op::Place { service, constraints, half_cpus, gib, strategy, zone_preference } => {
                    let mut t = task(&format!("t{k}"), &format!("s{service}"));
                    t.spec.placement.constraints =
                        constraints.iter().map(|&c| constraint(CONSTRAINTS[c])).collect();
                    t.spec.resources.reserve_nano_cpus = half_cpus * CPU / 2;
                    t.spec.resources.reserve_memory = gib * GIB;
                    t.spec.placement.strategy = strategy;
                    if zone_preference {
                        t.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
                    }
                    let verdicts: Vec<Option<Rejection>> = nodes
                        .iter()
                        .map(|n| model_check(n, used.get(&n.id).copied().unwrap_or_default(), &t))
                        .collect();
                    match s.place(&t, Strategy::Spread) {
                        Ok(id) => {
                            let i = nodes.iter().position(|n| n.id == id);
                            prop_assert!(i.is_some(), "placed on unknown node {}", id);
                            let i = i.unwrap_or_default();
                            prop_assert_eq!(verdicts[i], None, "placed on {} which fails a filter", id);
                            let entry = used.entry(id.clone()).or_default();
                            entry.0 += t.spec.resources.reserve_nano_cpus;
                            entry.1 += t.spec.resources.reserve_memory;
                            prop_assert!(entry.0 <= nodes[i].resources.nano_cpus);
                            prop_assert!(entry.1 <= nodes[i].resources.memory_bytes);
                            prop_assert_eq!(s.node_of(&t.id), Some(id.as_str()));
                            placed.push(t);
                        }
                        Err(why) => {
                            prop_assert!(verdicts.iter().all(Option::is_some), "refused, yet a node fits: {}", why);
                            let mut expected = Unschedulable::default();
                            for v in verdicts.into_iter().flatten() {
                                expected.count(v);
                            }
                            prop_assert_eq!(why.nodes(), nodes.len());
                            prop_assert_eq!(why, expected);
                        }
                    }
                }
            }
        }
        // Releasing everything placed leaves the scheduler as a fresh one.
        for t in &placed {
            s.release(t);
        }
        let mut fresh = Scheduler::new(&nodes, &existing);
        for (k, service) in [0, 0, 1, 2, 1].into_iter().enumerate() {
            let mut probe = task(&format!("probe{k}"), &format!("s{service}"));
            probe.spec.resources.reserve_nano_cpus = CPU;
            probe.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
            for strategy in [Strategy::Spread, Strategy::Binpack] {
                prop_assert_eq!(s.place(&probe, strategy), fresh.place(&probe, strategy));
            }
        }
    }

    #[test]
    fn spread_keeps_each_service_within_one_task_across_eligible_nodes(
        shapes in proptest::collection::vec(node_shape(), 1..12),
        services in proptest::collection::vec(0..4usize, 1..80),
    ) {
        let nodes: Vec<Node> = shapes.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        let eligible: Vec<&Node> = nodes.iter().filter(|n| filter::is_available(n)).collect();
        let mut s = Scheduler::new(&nodes, &[]);
        let mut per_service: HashMap<(usize, String), usize> = HashMap::new();
        for (k, &service) in services.iter().enumerate() {
            let t = task(&format!("t{k}"), &format!("s{service}"));
            match s.place(&t, Strategy::Spread) {
                Ok(id) => *per_service.entry((service, id)).or_default() += 1,
                Err(why) => prop_assert!(eligible.is_empty(), "{}", why),
            }
        }
        for service in 0..4 {
            let counts: Vec<usize> = eligible
                .iter()
                .map(|n| per_service.get(&(service, n.id.clone())).copied().unwrap_or(0))
                .collect();
            if let (Some(max), Some(min)) = (counts.iter().max(), counts.iter().min()) {
                prop_assert!(max - min <= 1, "service s{} spread as {:?}", service, counts);
            }
        }
    }

    #[test]
    fn binpack_without_reservations_puts_a_pass_on_one_node(
        shapes in proptest::collection::vec(node_shape(), 1..12),
        count in 1..30usize,
    ) {
        let nodes: Vec<Node> = shapes.iter().enumerate().map(|(i, s)| build_node(i, s)).collect();
        let mut s = Scheduler::new(&nodes, &[]);
        let chosen: Vec<Result<String, Unschedulable>> = (0..count)
            .map(|k| s.place(&task(&format!("t{k}"), "web"), Strategy::Binpack))
            .collect();
        prop_assert!(chosen.windows(2).all(|w| w[0] == w[1]), "{:?}", chosen);
    }
}
