//! Endpoint tables riding the simulated cluster: a published endpoint
//! reaches every node, a dead owner's endpoints leave every survivor's data
//! plane and return with it, and anti-entropy repairs what a partition hid.

use std::time::Duration;

use super::*;

fn holds(sim: &Simulation<TableNode>, node: usize, task: &str) -> bool {
    sim.app(node).is_some_and(|app| {
        app.tables()
            .get("net", task)
            .is_some_and(|d| !d.is_tombstone())
    })
}

fn programs(sim: &Simulation<TableNode>, node: usize, task: &str) -> bool {
    sim.app(node)
        .is_some_and(|app| app.live("net").iter().any(|e| e.record.task_id == task))
}

#[test]
fn dead_owner_is_withdrawn_everywhere_and_returns_with_its_node() {
    let mut sim = table_cluster(SimConfig::new(5, 21));
    sim.act(2, |app, now| app.publish("net", endpoint("t1", 2, 1), now));
    sim.run_for(Duration::from_secs(2));
    assert!((0..5).all(|n| programs(&sim, n, "t1")));

    let bump = sim
        .membership(2)
        .map(|m| m.identity().bump())
        .unwrap_or_default();
    sim.crash(2);
    let deadline = sim.now() + Duration::from_secs(10);
    assert!(sim.run_until_dead_everywhere(2, bump, deadline).is_some());
    for survivor in [0, 1, 3, 4] {
        assert!(
            !programs(&sim, survivor, "t1"),
            "n{survivor} still programs t1"
        );
        assert!(holds(&sim, survivor, "t1"), "entries of the dead are kept");
    }

    // The node comes back without its task: anti-entropy tombstones the
    // entry its previous run left everywhere.
    sim.start(2, &[0]);
    let start = sim.now();
    let deadline = start + TABLE_SYNC_INTERVAL * 3;
    let cleaned = sim.run_until_with(deadline, |sim| (0..5).all(|n| !holds(sim, n, "t1")));
    println!(
        "restart -> stale endpoint tombstoned everywhere: {:?}",
        cleaned.map(|t| t - start)
    );
    assert!(cleaned.is_some());

    // The task starts again on it: everyone programs the new endpoint.
    sim.act(2, |app, now| app.publish("net", endpoint("t1", 2, 2), now));
    let start = sim.now();
    let back = sim.run_until_with(start + Duration::from_secs(5), |sim| {
        (0..5).all(|n| programs(sim, n, "t1"))
    });
    println!(
        "republish -> programmed everywhere: {:?}",
        back.map(|t| t - start)
    );
    assert!(back.is_some_and(|t| t - start < Duration::from_secs(2)));
}

#[test]
fn anti_entropy_repairs_what_a_partition_hid() {
    let mut sim = table_cluster(SimConfig::new(5, 22));
    sim.partition(&[vec![4]]);
    sim.act(0, |app, now| app.publish("net", endpoint("t2", 0, 1), now));
    sim.run_for(Duration::from_secs(15));
    assert!((0..4).all(|n| holds(&sim, n, "t2")));
    assert!(!holds(&sim, 4, "t2"), "the partition must hide the change");

    sim.heal();
    let start = sim.now();
    let deadline = start + TABLE_SYNC_INTERVAL * 3;
    let repaired = sim.run_until_with(deadline, |sim| (0..5).all(|n| holds(sim, n, "t2")));
    println!(
        "heal -> endpoint everywhere: {:?}",
        repaired.map(|t| t - start)
    );
    assert!(repaired.is_some());
    assert!(sim
        .run_until_with(deadline, |sim| sim.converged())
        .is_some());
}

#[test]
fn endpoints_spread_with_loss_and_delay() {
    let mut config = SimConfig::new(20, 23);
    config.link = LinkModel::lossy(0.10, Duration::from_millis(50));
    let spread = measure_propagation(&config, 5, Duration::from_secs(30));
    let summary = Summary::of(spread.iter().flatten().copied());
    println!("20 nodes, 10% loss, 50 ms: published endpoint -> every table: {summary:?}");
    assert_eq!(spread.iter().flatten().count(), 5, "{spread:?}");
    assert!(summary.is_some_and(|s| s.max < Duration::from_secs(5)));
}
