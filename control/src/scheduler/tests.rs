//! Unit tests of the scheduler: each asserts where tasks land, or the
//! message a user would read in `service ps` when they land nowhere.

use std::collections::BTreeMap;

use super::fixtures::{constraint, labelled, node, running_on, task, tasks, CPU, GIB};
use super::*;
use crate::objects::{Availability, NodeState, Role, TaskState};

/// Places every task in order, panicking with the reason if one fails.
fn place_all(s: &mut Scheduler, tasks: &[Task], strategy: Strategy) -> Vec<String> {
    tasks
        .iter()
        .map(|t| match s.place(t, strategy) {
            Ok(node) => node,
            Err(e) => panic!("{} not placed: {e}", t.id),
        })
        .collect()
}

/// Tasks per node id.
fn tally(placed: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in placed {
        *counts.entry(node.clone()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn spread_puts_two_of_six_tasks_on_each_of_three_nodes() {
    let mut s = Scheduler::new(&[node("a"), node("b"), node("c")], &[]);
    let placed = place_all(&mut s, &tasks("web", 6), Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("a", 2), ("b", 2), ("c", 2)]));
    // Round-robin order, ties broken by node id.
    assert_eq!(placed[..3], ["a", "b", "c"]);
}

#[test]
fn spread_prefers_fewer_tasks_of_the_service_then_fewer_tasks() {
    let existing = [
        running_on("w1", "web", "a"),
        running_on("d1", "db", "b"),
        running_on("d2", "db", "b"),
        running_on("d3", "db", "c"),
    ];
    let mut s = Scheduler::new(&[node("a"), node("b"), node("c")], &existing);
    // b and c have no web task; c has fewer tasks overall.
    assert_eq!(s.place(&task("w2", "web"), Strategy::Spread).unwrap(), "c");
    assert_eq!(s.place(&task("w3", "web"), Strategy::Spread).unwrap(), "b");
}

#[test]
fn dead_tasks_and_tasks_on_unknown_nodes_do_not_count() {
    let mut failed = running_on("w1", "web", "a");
    failed.status.state = TaskState::Failed;
    let mut stopping = running_on("w2", "web", "a");
    stopping.desired_state = TaskState::Shutdown;
    let existing = [failed, stopping, running_on("w3", "web", "gone")];
    let mut s = Scheduler::new(&[node("a"), node("b")], &existing);
    assert_eq!(s.place(&task("w4", "web"), Strategy::Spread).unwrap(), "a");
}

#[test]
fn unavailable_nodes_get_no_tasks() {
    let mut drained = node("a");
    drained.availability = Availability::Drain;
    let mut paused = node("b");
    paused.availability = Availability::Pause;
    let mut down = node("c");
    down.state = NodeState::Down;
    let mut unknown = node("d");
    unknown.state = NodeState::Unknown;
    let mut s = Scheduler::new(&[drained, paused, down, unknown, node("e")], &[]);
    let placed = place_all(&mut s, &tasks("web", 5), Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("e", 5)]));
}

#[test]
fn constraints_on_id_hostname_role_and_labels() {
    let mut manager = labelled("m", "zone", "a");
    manager.role = Role::Manager;
    let nodes = [
        manager,
        labelled("w1", "zone", "b"),
        labelled("w2", "zone", "a"),
    ];
    let cases = [
        ("node.id==w1", vec!["w1"]),
        ("node.id!=w1", vec!["m", "w2"]),
        ("node.hostname==host-w2", vec!["w2"]),
        ("node.hostname!=host-w2", vec!["m", "w1"]),
        ("node.role==manager", vec!["m"]),
        ("node.role!=manager", vec!["w1", "w2"]),
        ("node.labels.zone==a", vec!["m", "w2"]),
        ("node.labels.zone!=a", vec!["w1"]),
        // Swarm compares values without regard to case.
        ("node.labels.zone==A", vec!["m", "w2"]),
        ("node.role==Worker", vec!["w1", "w2"]),
    ];
    for (text, expected) in cases {
        let mut s = Scheduler::new(&nodes, &[]);
        let mut batch = tasks("web", 6);
        for t in &mut batch {
            t.spec.placement.constraints = vec![constraint(text)];
        }
        let placed = place_all(&mut s, &batch, Strategy::Spread);
        let got: Vec<String> = tally(&placed).into_keys().collect();
        assert_eq!(got, expected, "{text}");
    }
}

#[test]
fn all_constraints_must_hold() {
    let nodes = [
        labelled("a", "zone", "x"),
        labelled("b", "zone", "x"),
        node("c"),
    ];
    let mut s = Scheduler::new(&nodes, &[]);
    let mut t = task("w1", "web");
    t.spec.placement.constraints =
        vec![constraint("node.labels.zone==x"), constraint("node.id!=a")];
    assert_eq!(s.place(&t, Strategy::Spread).unwrap(), "b");
}

#[test]
fn a_missing_label_never_equals_and_always_differs() {
    let nodes = [labelled("a", "zone", "x"), node("b")];
    let mut equal = task("w1", "web");
    equal.spec.placement.constraints = vec![constraint("node.labels.disk==ssd")];
    let mut s = Scheduler::new(&nodes, &[]);
    let err = s.place(&equal, Strategy::Spread).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no suitable node (scheduling constraints not satisfied on 2 nodes)"
    );
    let mut differ = task("w2", "web");
    differ.spec.placement.constraints = vec![constraint("node.labels.zone!=x")];
    assert_eq!(s.place(&differ, Strategy::Spread).unwrap(), "b");
}

#[test]
fn reservations_must_fit_what_is_left() {
    let mut small = node("a");
    small.resources.nano_cpus = CPU;
    let mut s = Scheduler::new(&[small, node("b")], &[]);
    let mut big = tasks("web", 3);
    for t in &mut big {
        t.spec.resources.reserve_nano_cpus = 2 * CPU;
        t.spec.resources.reserve_memory = 2 * GIB;
    }
    assert_eq!(s.place(&big[0], Strategy::Spread).unwrap(), "b");
    assert_eq!(s.place(&big[1], Strategy::Spread).unwrap(), "b");
    let err = s.place(&big[2], Strategy::Spread).unwrap_err();
    assert_eq!(err.resources, 2);
    assert_eq!(
        err.to_string(),
        "no suitable node (insufficient resources on 2 nodes)"
    );
    // Memory alone can be what is missing.
    let mut s = Scheduler::new(&[node("c")], &[]);
    let mut hungry = task("h", "db");
    hungry.spec.resources.reserve_memory = 9 * GIB;
    assert_eq!(s.place(&hungry, Strategy::Spread).unwrap_err().resources, 1);
}

#[test]
fn a_node_without_capacity_takes_only_tasks_that_reserve_nothing() {
    let mut bare = node("a");
    bare.resources.nano_cpus = 0;
    bare.resources.memory_bytes = 0;
    let mut s = Scheduler::new(&[bare], &[]);
    let mut reserving = task("w1", "web");
    reserving.spec.resources.reserve_memory = 1;
    assert_eq!(
        s.place(&reserving, Strategy::Spread).unwrap_err().resources,
        1
    );
    assert_eq!(s.place(&task("w2", "web"), Strategy::Spread).unwrap(), "a");
}

#[test]
fn existing_reservations_count() {
    let mut holder = running_on("d1", "db", "a");
    holder.spec.resources.reserve_nano_cpus = 3 * CPU;
    let mut s = Scheduler::new(&[node("a")], &[holder]);
    let mut t = task("w1", "web");
    t.spec.resources.reserve_nano_cpus = 2 * CPU;
    assert_eq!(s.place(&t, Strategy::Spread).unwrap_err().resources, 1);
}

#[test]
fn binpack_fills_one_node_before_the_next() {
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let mut n = node(id);
            n.resources.nano_cpus = 2 * CPU;
            n
        })
        .collect();
    let mut s = Scheduler::new(&nodes, &[]);
    let mut batch = tasks("web", 9);
    for t in &mut batch {
        t.spec.resources.reserve_nano_cpus = CPU / 2;
    }
    let placed = place_all(&mut s, &batch, Strategy::Binpack);
    assert_eq!(placed[..4], ["a", "a", "a", "a"]);
    assert_eq!(placed[4..8], ["b", "b", "b", "b"]);
    assert_eq!(placed[8], "c");
}

#[test]
fn binpack_prefers_the_fuller_node_by_its_scarcest_resource() {
    // b is fuller by memory, though emptier by CPU.
    let mut cpu_heavy = running_on("x1", "x", "a");
    cpu_heavy.spec.resources.reserve_nano_cpus = 2 * CPU;
    let mut memory_heavy = running_on("x2", "x", "b");
    memory_heavy.spec.resources.reserve_memory = 6 * GIB;
    let mut s = Scheduler::new(&[node("a"), node("b")], &[cpu_heavy, memory_heavy]);
    assert_eq!(s.place(&task("w1", "web"), Strategy::Binpack).unwrap(), "b");
}

#[test]
fn binpack_without_reservations_fills_one_node_first() {
    let mut s = Scheduler::new(&[node("a"), node("b")], &[running_on("x", "db", "b")]);
    let placed = place_all(&mut s, &tasks("web", 4), Strategy::Binpack);
    assert_eq!(tally(&placed), counts(&[("b", 4)]));
}

#[test]
fn the_task_strategy_overrides_the_cluster_strategy() {
    let mut s = Scheduler::new(&[node("a"), node("b")], &[]);
    let mut batch = tasks("web", 4);
    for t in &mut batch {
        t.spec.placement.strategy = Some(Strategy::Binpack);
    }
    let placed = place_all(&mut s, &batch, Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("a", 4)]));
    let mut spread = task("d1", "db");
    spread.spec.placement.strategy = Some(Strategy::Spread);
    assert_eq!(s.place(&spread, Strategy::Binpack).unwrap(), "b");
}

#[test]
fn preferences_spread_over_zones_not_nodes() {
    let nodes = [
        labelled("a", "zone", "east"),
        labelled("b", "zone", "west"),
        labelled("c", "zone", "west"),
    ];
    let mut s = Scheduler::new(&nodes, &[]);
    let mut batch = tasks("web", 6);
    for t in &mut batch {
        t.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
    }
    let placed = place_all(&mut s, &batch, Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("a", 3), ("b", 2), ("c", 1)]));
}

#[test]
fn nodes_without_the_label_form_their_own_group() {
    let nodes = [labelled("a", "zone", "east"), node("b"), node("c")];
    let mut s = Scheduler::new(&nodes, &[]);
    let mut batch = tasks("web", 4);
    for t in &mut batch {
        t.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
    }
    let placed = place_all(&mut s, &batch, Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("a", 2), ("b", 1), ("c", 1)]));
}

#[test]
fn preferences_nest_in_order() {
    let mut nodes = Vec::new();
    for (id, zone, rack) in [
        ("a", "east", "1"),
        ("b", "east", "1"),
        ("c", "east", "2"),
        ("d", "west", "1"),
    ] {
        let mut n = labelled(id, "zone", zone);
        n.labels.insert("rack".into(), rack.into());
        nodes.push(n);
    }
    let mut s = Scheduler::new(&nodes, &[]);
    let mut batch = tasks("web", 8);
    for t in &mut batch {
        t.spec.placement.preferences = vec![
            "spread=node.labels.zone".into(),
            "spread=node.labels.rack".into(),
        ];
    }
    let placed = place_all(&mut s, &batch, Strategy::Spread);
    // 4 per zone; in east, 2 per rack; rack 1 of east spreads over a and b.
    assert_eq!(
        tally(&placed),
        counts(&[("a", 1), ("b", 1), ("c", 2), ("d", 4)])
    );
}

#[test]
fn preferences_only_see_nodes_that_fit() {
    let mut drained = labelled("a", "zone", "east");
    drained.availability = Availability::Drain;
    let nodes = [drained, labelled("b", "zone", "west")];
    let mut s = Scheduler::new(&nodes, &[]);
    let mut batch = tasks("web", 2);
    for t in &mut batch {
        t.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
    }
    let placed = place_all(&mut s, &batch, Strategy::Spread);
    assert_eq!(tally(&placed), counts(&[("b", 2)]));
}

#[test]
fn each_node_is_counted_once_under_its_first_failing_check() {
    let mut drained = labelled("a", "zone", "x");
    drained.availability = Availability::Drain;
    let mut full = labelled("b", "zone", "x");
    full.resources.nano_cpus = 0;
    let nodes = [
        drained,
        full,
        node("c"),
        node("d"),
        labelled("e", "zone", "y"),
    ];
    let mut s = Scheduler::new(&nodes, &[]);
    let mut t = task("w1", "web");
    t.spec.placement.constraints = vec![constraint("node.labels.zone==x")];
    t.spec.resources.reserve_nano_cpus = CPU;
    let err = s.place(&t, Strategy::Spread).unwrap_err();
    assert_eq!(
        err,
        Unschedulable {
            unavailable: 1,
            constraints: 3,
            resources: 1,
            host_ports: 0,
        }
    );
    assert_eq!(
        err.to_string(),
        "no suitable node (scheduling constraints not satisfied on 3 nodes; \
         insufficient resources on 1 node; 1 node not available for new tasks)"
    );
    let mut empty = Scheduler::new(&[], &[]);
    assert_eq!(
        empty.place(&t, Strategy::Spread).unwrap_err().to_string(),
        "no suitable node"
    );
}

#[test]
fn place_on_checks_and_records_one_node_for_global_tasks() {
    let mut drained = node("b");
    drained.availability = Availability::Drain;
    let mut s = Scheduler::new(&[node("a"), drained], &[]);
    let mut global = task("g.a", "agent");
    global.spec.resources.reserve_nano_cpus = 3 * CPU;
    assert_eq!(s.place_on(&global, "a"), Ok(()));
    assert_eq!(s.node_of("g.a"), Some("a"));
    // The reservation is recorded: another 3 CPUs do not fit on a.
    let mut other = task("g2.a", "other");
    other.spec.resources.reserve_nano_cpus = 3 * CPU;
    assert_eq!(
        s.place_on(&other, "a").unwrap_err().to_string(),
        "no suitable node (insufficient resources on 1 node)"
    );
    assert_eq!(
        s.place_on(&task("g.b", "agent"), "b")
            .unwrap_err()
            .to_string(),
        "no suitable node (1 node not available for new tasks)"
    );
    assert_eq!(
        s.place_on(&task("g.z", "agent"), "z")
            .unwrap_err()
            .unavailable,
        1
    );
    let mut constrained = task("g3.a", "agent");
    constrained.spec.placement.constraints = vec![constraint("node.role==manager")];
    assert_eq!(s.place_on(&constrained, "a").unwrap_err().constraints, 1);
}

#[test]
fn release_frees_reservations_and_counts() {
    let mut s = Scheduler::new(&[node("a"), node("b")], &[]);
    let mut big = task("w1", "web");
    big.spec.resources.reserve_nano_cpus = 4 * CPU;
    assert_eq!(s.place(&big, Strategy::Binpack).unwrap(), "a");
    let mut next = task("w2", "web");
    next.spec.resources.reserve_nano_cpus = 4 * CPU;
    assert_eq!(s.place(&next, Strategy::Binpack).unwrap(), "b");
    s.release(&big);
    assert_eq!(s.node_of("w1"), None);
    // Releasing twice, or a task never counted, changes nothing.
    s.release(&big);
    s.release(&task("nobody", "web"));
    let mut third = task("w3", "web");
    third.spec.resources.reserve_nano_cpus = 4 * CPU;
    assert_eq!(s.place(&third, Strategy::Binpack).unwrap(), "a");
    // a and b hold one web task each again, so spread ties on a.
    assert_eq!(s.place(&task("w4", "web"), Strategy::Spread).unwrap(), "a");
}

#[test]
fn placing_a_counted_task_again_moves_it() {
    let mut big = running_on("w1", "web", "a");
    big.spec.resources.reserve_nano_cpus = 4 * CPU;
    let mut s = Scheduler::new(&[node("a")], &[big.clone()]);
    // Its own reservation does not keep it off the node it was on.
    assert_eq!(s.place(&big, Strategy::Spread).unwrap(), "a");
    let mut other = task("w2", "web");
    other.spec.resources.reserve_nano_cpus = CPU;
    assert_eq!(s.place(&other, Strategy::Spread).unwrap_err().resources, 1);
}

/// A task of `service` publishing `port`/tcp in host mode.
fn host_port_task(id: &str, service: &str, port: u16) -> Task {
    let mut t = task(id, service);
    t.host_ports = vec![crate::objects::PortConfig {
        protocol: crate::objects::Protocol::Tcp,
        target: 80,
        published: port,
        mode: crate::objects::PublishMode::Host,
    }];
    t
}

#[test]
fn a_host_mode_port_takes_one_task_per_node() {
    let running = host_port_task("w1", "web", 8080);
    let running = Task {
        node_id: Some("a".into()),
        status: crate::objects::TaskStatus {
            state: TaskState::Running,
            ..Default::default()
        },
        ..running
    };
    let mut s = Scheduler::new(&[node("a"), node("b")], &[running]);
    // Spread would tie on a for another service; the port sends it to b.
    assert_eq!(
        s.place(&host_port_task("x1", "other", 8080), Strategy::Binpack)
            .unwrap(),
        "b"
    );
    let err = s
        .place(&host_port_task("w2", "web", 8080), Strategy::Spread)
        .unwrap_err();
    assert_eq!(err.host_ports, 2);
    assert_eq!(
        err.to_string(),
        "no suitable node (host-mode port already in use on 2 nodes)"
    );
    // Another port, or the same number over UDP, fits.
    assert!(s
        .place(&host_port_task("w3", "web", 8081), Strategy::Spread)
        .is_ok());
    let mut udp = host_port_task("w4", "web", 8080);
    udp.host_ports[0].protocol = crate::objects::Protocol::Udp;
    assert!(s.place(&udp, Strategy::Spread).is_ok());
    // Releasing the task on b frees the port there.
    s.release(&host_port_task("x1", "other", 8080));
    let err = s
        .place_on(&host_port_task("g", "web", 8080), "a")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no suitable node (host-mode port already in use on 1 node)"
    );
    assert_eq!(
        s.place(&host_port_task("w5", "web", 8080), Strategy::Spread)
            .unwrap(),
        "b"
    );
}
