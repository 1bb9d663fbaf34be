//! Builders for the scheduler's tests: nodes and tasks with Swarm's
//! defaults, changed field by field in each test.

use std::collections::BTreeMap;

use crate::objects::{
    Availability, Constraint, Node, NodeResources, NodeState, Role, Task, TaskSpec, TaskState,
    TaskStatus,
};

/// One CPU in nano CPUs.
pub(super) const CPU: u64 = 1_000_000_000;
/// One GiB in bytes.
pub(super) const GIB: u64 = 1 << 30;

/// A ready, active worker `id` on host `host-ID` with 4 CPUs and 8 GiB.
pub(super) fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        hostname: format!("host-{id}"),
        addr: "10.0.0.1".to_string(),
        listen_port: 0,
        role: Role::Worker,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        state: NodeState::Ready,
        raft_id: None,
        resources: NodeResources {
            nano_cpus: 4 * CPU,
            memory_bytes: 8 * GIB,
        },
        created_at: 0,
        updated_at: 0,
        network_errors: Default::default(),
        build_failures: Default::default(),
        restarting_until_ms: None,
    }
}

/// `node(id)` with the label `key=value`.
pub(super) fn labelled(id: &str, key: &str, value: &str) -> Node {
    let mut n = node(id);
    n.labels.insert(key.to_string(), value.to_string());
    n
}

/// A pending task `id` of service `service`, wanted running, on no node.
pub(super) fn task(id: &str, service: &str) -> Task {
    Task {
        id: id.to_string(),
        service_id: service.to_string(),
        service_name: service.to_string(),
        slot: 1,
        node_id: None,
        spec: TaskSpec::default(),
        spec_version: 1,
        networks: vec![],
        host_ports: vec![],
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            ..TaskStatus::default()
        },
        not_before_ms: 0,
        attempt: 0,
        created_at_ms: 0,
    }
}

/// `count` tasks of `service`, ids `SERVICE.1`, `SERVICE.2`...
pub(super) fn tasks(service: &str, count: usize) -> Vec<Task> {
    (1..=count)
        .map(|slot| task(&format!("{service}.{slot}"), service))
        .collect()
}

/// A running task of `service` on `node_id`.
pub(super) fn running_on(id: &str, service: &str, node_id: &str) -> Task {
    let mut t = task(id, service);
    t.node_id = Some(node_id.to_string());
    t.status.state = TaskState::Running;
    t
}

/// The constraint `KEY==VALUE` or `KEY!=VALUE`.
pub(super) fn constraint(text: &str) -> Constraint {
    match text.parse() {
        Ok(c) => c,
        Err(e) => panic!("bad constraint in a test: {e}"),
    }
}
