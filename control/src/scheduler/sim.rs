//! A cluster-sized run: 1,000 nodes, 100 services of 100 replicas, all
//! scheduled in one pass, checked for completeness, capacity and balance,
//! and timed (`cargo test --release -p shoal-control scheduler::sim -- --nocapture`).

use std::collections::HashMap;
use std::time::Instant;

use super::fixtures::{constraint, node, task, CPU, GIB};
use super::*;
use crate::objects::{to_base36, Role};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const REPLICAS: usize = 100;
const ZONES: [&str; 3] = ["a", "b", "c"];

/// Node `i`: zone a, b or c in turn; every 25th is a database node; even
/// ones have 8 CPUs and 16 GiB, odd ones 4 and 8; the first 5 are managers.
fn sim_node(i: usize) -> Node {
    let mut n = node(&to_base36(0x5eed_0000 + i as u128 * 7_919, 25));
    n.hostname = format!("worker-{i:04}");
    n.labels.insert("zone".into(), ZONES[i % 3].into());
    if i.is_multiple_of(25) {
        n.labels.insert("tier".into(), "db".into());
    }
    if i < 5 {
        n.role = Role::Manager;
    }
    let size = if i.is_multiple_of(2) { 2 } else { 1 };
    n.resources.nano_cpus = size * 4 * CPU;
    n.resources.memory_bytes = size * 8 * GIB;
    n
}

/// Service `s`: one in ten is pinned to database nodes, one in ten spreads
/// over zones, one in ten avoids managers; reservations vary by `s % 4`.
fn sim_tasks(s: usize) -> Vec<Task> {
    let service = format!("svc{s:03}");
    (1..=REPLICAS)
        .map(|slot| {
            let mut t = task(&format!("{service}.{slot}"), &service);
            let placement = &mut t.spec.placement;
            match s % 10 {
                0 => placement.constraints = vec![constraint("node.labels.tier==db")],
                1 => placement.preferences = vec!["spread=node.labels.zone".into()],
                2 => placement.constraints = vec![constraint("node.role!=manager")],
                _ => {}
            }
            let r = &mut t.spec.resources;
            match s % 4 {
                1 => r.reserve_nano_cpus = CPU / 10,
                2 => r.reserve_memory = 256 << 20,
                3 => {
                    r.reserve_nano_cpus = CPU / 5;
                    r.reserve_memory = 256 << 20;
                }
                _ => {}
            }
            t
        })
        .collect()
}

#[test]
fn ten_thousand_tasks_on_a_thousand_nodes() {
    let nodes: Vec<Node> = (0..NODES).map(sim_node).collect();
    let services: Vec<Vec<Task>> = (0..SERVICES).map(sim_tasks).collect();

    let started = Instant::now();
    let mut scheduler = Scheduler::new(&nodes, &[]);
    let mut placed: Vec<(usize, &Task, String)> = Vec::with_capacity(SERVICES * REPLICAS);
    for (s, tasks) in services.iter().enumerate() {
        for t in tasks {
            match scheduler.place(t, Strategy::Spread) {
                Ok(node) => placed.push((s, t, node)),
                Err(why) => panic!("{} not placed: {why}", t.id),
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "scheduler::sim: placed {} tasks on {NODES} nodes in {elapsed:?} ({:?} per task)",
        placed.len(),
        elapsed / placed.len().max(1) as u32
    );
    assert_eq!(placed.len(), SERVICES * REPLICAS);

    // No node is reserved past its capacity.
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut reserved = vec![(0u64, 0u64); NODES];
    let mut per_service = vec![vec![0usize; NODES]; SERVICES];
    for (s, t, node) in &placed {
        let i = index[node.as_str()];
        reserved[i].0 += t.spec.resources.reserve_nano_cpus;
        reserved[i].1 += t.spec.resources.reserve_memory;
        per_service[*s][i] += 1;
    }
    for (n, (cpu, memory)) in nodes.iter().zip(&reserved) {
        assert!(
            *cpu <= n.resources.nano_cpus,
            "{} over-reserved: {cpu} nano CPUs",
            n.hostname
        );
        assert!(
            *memory <= n.resources.memory_bytes,
            "{} over-reserved: {memory} bytes",
            n.hostname
        );
    }

    // Each service is spread within one task across the nodes it may use,
    // and zone-spread services within one task across zones.
    for (s, counts) in per_service.iter().enumerate() {
        let eligible: Vec<usize> = (0..NODES)
            .filter(|&i| match s % 10 {
                0 => i.is_multiple_of(25),
                2 => i >= 5,
                _ => true,
            })
            .map(|i| counts[i])
            .collect();
        let placed_elsewhere = REPLICAS - eligible.iter().sum::<usize>();
        assert_eq!(placed_elsewhere, 0, "svc{s:03} broke its constraint");
        let (max, min) = (eligible.iter().max(), eligible.iter().min());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "svc{s:03} unbalanced"
        );
        if s % 10 == 1 {
            let mut zones = [0usize; 3];
            for (i, count) in counts.iter().enumerate() {
                zones[i % 3] += count;
            }
            assert!(
                zones.iter().max().unwrap_or(&0) - zones.iter().min().unwrap_or(&0) <= 1,
                "svc{s:03} zones {zones:?}"
            );
        }
    }

    // The next pass starts from those 10,000 live tasks.
    let live: Vec<Task> = placed
        .iter()
        .map(|(_, t, node)| {
            let mut t = (*t).clone();
            t.node_id = Some(node.clone());
            t
        })
        .collect();
    let started = Instant::now();
    let again = Scheduler::new(&nodes, &live);
    eprintln!(
        "scheduler::sim: rebuilt from {} live tasks in {:?}",
        live.len(),
        started.elapsed()
    );
    assert_eq!(
        again.node_of("svc000.1"),
        placed.first().map(|(_, _, n)| n.as_str())
    );
}
