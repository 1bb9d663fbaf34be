//! Rolling updates of services with published ports, and the addresses
//! they leave behind: an update converges, creates one task per slot, and
//! gives the network back the addresses it had.

use super::tests::{network, spec, Sim};
use super::*;
use crate::objects::{PortConfig, Protocol, Task, TaskState, UpdateOrder, UpdateState};

/// A simulated swarm with an ingress network and a service `web` that
/// publishes port 8080, settled.
fn published(replicas: u64, order: UpdateOrder) -> Sim {
    let mut sim = Sim::new(3);
    let mut ingress = network("ingress", "10.255.0.0/24");
    ingress.spec.ingress = true;
    sim.networks.push(ingress);
    let mut s = spec("web", replicas);
    s.ports = vec![PortConfig {
        protocol: Protocol::Tcp,
        target: 80,
        published: 8080,
        mode: Default::default(),
    }];
    s.update.order = order;
    s.rollback.order = order;
    sim.create(s);
    sim.settle();
    sim
}

/// Free addresses on each network.
fn free(sim: &Sim) -> Vec<usize> {
    let book = AddressBook::new(sim.tasks.values(), &sim.quarantines, sim.now_ms);
    sim.networks.iter().map(|n| book.usage(n).free).collect()
}

/// Steps until the update (or rollback) is no longer in progress; the
/// state it ended in.
fn until_done(sim: &mut Sim) -> UpdateState {
    for _ in 0..400 {
        sim.step();
        let state = sim.services[0].update_status.as_ref().map(|u| u.state);
        if let Some(state) = state.filter(|s| !s.in_progress()) {
            return state;
        }
    }
    panic!(
        "the update did not end: {:?}\n{:#?}",
        sim.services[0].update_status,
        sim.tasks.values().collect::<Vec<&Task>>()
    );
}

#[test]
fn tasks_of_a_published_service_are_current_with_the_ingress_first() {
    let sim = published(2, UpdateOrder::StopFirst);
    let service = &sim.services[0];
    for t in sim.running("web") {
        assert_eq!(t.networks[0].network, "ingress");
        assert!(update::is_current(t, service, Some("ingress")));
        // Without the ingress network in the comparison every task looked
        // outdated, and updates replaced them without end.
        assert!(!update::is_current(t, service, None));
    }
}

#[test]
fn a_stop_first_update_of_a_published_service_converges_on_the_same_addresses() {
    let mut sim = published(3, UpdateOrder::StopFirst);
    let before = free(&sim);
    let tasks_before = sim.tasks.len();
    let addresses: Vec<_> = {
        let mut a: Vec<_> = sim
            .running("web")
            .iter()
            .map(|t| t.networks.clone())
            .collect();
        a.sort_by_key(|n| n[0].ip);
        a
    };
    sim.update("web", |s| s.task.env.push("VER=2".into()));
    assert_eq!(until_done(&mut sim), UpdateState::Completed);
    // One new task per slot, no more.
    assert_eq!(sim.tasks.len(), tasks_before + 3);
    assert_eq!(sim.running("web").len(), 3);
    // Each slot's new task took its old task's addresses: none are held
    // for a tombstone's lifetime.
    let mut now: Vec<_> = sim
        .running("web")
        .iter()
        .map(|t| t.networks.clone())
        .collect();
    now.sort_by_key(|n| n[0].ip);
    assert_eq!(now, addresses);
    assert_eq!(free(&sim), before);
    sim.check_addresses();

    // The rollback the same way.
    let service = sim.services[0].clone();
    sim.services[0] = rolled_back(&service, "", sim.now_ms);
    assert_eq!(until_done(&mut sim), UpdateState::RollbackCompleted);
    assert_eq!(sim.running("web").len(), 3);
    assert!(sim.running("web").iter().all(|t| t.spec.env.is_empty()));
    assert_eq!(free(&sim), before);
}

#[test]
fn start_first_updates_hold_at_most_two_addresses_per_slot() {
    let mut sim = published(3, UpdateOrder::StartFirst);
    let before = free(&sim);
    for round in 0..4 {
        sim.update("web", |s| s.task.env = vec![format!("VER={round}")]);
        assert_eq!(until_done(&mut sim), UpdateState::Completed);
        assert_eq!(sim.running("web").len(), 3);
        let after = free(&sim);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                *a,
                b - 3,
                "round {round}: before {before:?}, after {after:?}"
            );
        }
        sim.check_addresses();
    }
}

#[test]
fn a_task_stopped_before_it_reached_a_node_gives_its_addresses_back_at_once() {
    let mut sim = published(1, UpdateOrder::StopFirst);
    let before = free(&sim);
    // A second service whose task can never be placed holds addresses...
    let mut s = spec("stuck", 1);
    s.task.placement.constraints = vec!["node.labels.nowhere==true".parse().unwrap()];
    sim.create(s);
    sim.run_for(1_000);
    let stuck: Vec<&Task> = sim
        .tasks
        .values()
        .filter(|t| t.service_name == "stuck")
        .collect();
    assert_eq!(stuck[0].status.state, TaskState::Pending);
    assert_eq!(free(&sim)[0], before[0] - 1);
    // ...until it is scaled away: no node announced them, so they are free
    // at once rather than after the tombstone's 30 minutes.
    sim.service("stuck").spec.mode = crate::objects::ServiceMode::Replicated { replicas: 0 };
    sim.settle();
    assert_eq!(free(&sim), before);
}
