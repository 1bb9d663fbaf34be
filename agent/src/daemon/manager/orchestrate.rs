//! The leader's desired-state loop: every tick (and on every applied
//! change) it folds the nodes' task reports into the tasks, runs one pass of
//! `shoal_control::orchestrator::reconcile` on a snapshot of the store, and
//! commits the plan. Followers do nothing here; a new leader picks up from
//! the store. Nodes learn their tasks from heartbeat answers, built here
//! once per applied log index.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_control::api::{Assignment, TaskReport};
use shoal_control::objects::{new_node_id, Cluster, Network, NetworkRequest, Node, Service, Task};
use shoal_control::orchestrator::{reconcile, AddressQuarantine, ClusterState, QUARANTINE_KIND};
use shoal_control::store::{kind, Command, Objects, Response};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::ManagerCtx;

/// How often the loop runs when nothing changes (restart delays, update
/// monitors and delays are counted in these ticks).
/// The ingress network's name and preferred subnet, as in Swarm.
const INGRESS_NAME: &str = "ingress";
const INGRESS_SUBNET: &str = "10.255.0.0/16";

const TICK: Duration = Duration::from_millis(250);
/// Writes per Raft entry, so one pass over many tasks makes entries of a
/// sane size.
const BATCH: usize = 200;

/// Task reports waiting to be folded in, by task id: the reporting node
/// and its report.
pub type Reports = HashMap<String, (String, TaskReport)>;

/// Assignments and finished tasks per node id, computed for one applied
/// log index.
#[derive(Default)]
pub struct AssignmentCache {
    index: Option<u64>,
    by_node: Arc<HashMap<String, Vec<Assignment>>>,
    history: Arc<HashMap<String, Vec<String>>>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every object of one kind, decoded; unreadable ones are logged and skipped.
pub fn list<T: serde::de::DeserializeOwned>(objects: &Objects, kind: &str) -> Vec<T> {
    match objects.list_as::<T>(kind) {
        Ok(list) => list.into_iter().map(|(_, v)| v.value).collect(),
        Err(e) => {
            tracing::error!("unreadable {kind} objects: {e}");
            Vec::new()
        }
    }
}

/// Folds a node's report into its task; true if the task changed. A report
/// never moves a task backwards, and only the task's node may report it.
pub fn apply_report(task: &mut Task, node: &str, report: &TaskReport, now_ms: u64) -> bool {
    if task.node_id.as_deref() != Some(node) || report.state < task.status.state {
        return false;
    }
    let before = task.status.clone();
    if report.state != task.status.state {
        task.status.timestamp_ms = now_ms;
    }
    task.status.state = report.state;
    task.status.message.clone_from(&report.message);
    task.status.err.clone_from(&report.err);
    task.status.exit_code = report.exit_code;
    task.status.pid = report.pid;
    task.status != before
}

impl ManagerCtx {
    /// Records the reports of a heartbeat for the next pass.
    pub fn take_reports(&self, node: &str, reports: Vec<TaskReport>) {
        if reports.is_empty() {
            return;
        }
        if let Ok(mut pending) = self.reports.lock() {
            for r in reports {
                pending.insert(r.task_id.clone(), (node.to_string(), r));
            }
        }
    }

    /// The unfinished tasks assigned to `node`, and the ids of its
    /// finished ones still in the store.
    pub fn assignments_for(&self, node: &str) -> Option<(Vec<Assignment>, Vec<String>)> {
        let objects = self.objects();
        let index = objects.applied_index();
        let mut cache = self.assignments.lock().ok()?;
        if cache.index != index || index.is_none() {
            let services: HashMap<String, Service> = list::<Service>(&objects, kind::SERVICE)
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect();
            let mut by_node: HashMap<String, Vec<Assignment>> = HashMap::new();
            let mut history: HashMap<String, Vec<String>> = HashMap::new();
            for task in list::<Task>(&objects, kind::TASK) {
                let Some(node_id) = task.node_id.clone() else {
                    continue;
                };
                if task.status.state.is_final() {
                    history.entry(node_id).or_default().push(task.id);
                    continue;
                }
                if task.status.state < shoal_control::objects::TaskState::Assigned {
                    continue;
                }
                let ports = services
                    .get(&task.service_id)
                    .map(|s| s.spec.ports.clone())
                    .unwrap_or_default();
                by_node.entry(node_id).or_default().push(Assignment {
                    name: task.name(),
                    task_id: task.id,
                    service_id: task.service_id,
                    service_name: task.service_name,
                    desired_state: task.desired_state,
                    spec: task.spec,
                    networks: task.networks,
                    ports,
                });
            }
            *cache = AssignmentCache {
                index,
                by_node: Arc::new(by_node),
                history: Arc::new(history),
            };
        }
        Some((
            cache.by_node.get(node).cloned().unwrap_or_default(),
            cache.history.get(node).cloned().unwrap_or_default(),
        ))
    }

    /// Leader only: the loop.
    pub(super) async fn orchestrate(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut applied = self.raft.watch_applied();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Let a burst of writes land together.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            if !self.is_leader() {
                continue;
            }
            if let Err(e) = self.orchestrate_once().await {
                tracing::debug!("orchestration pass: {}", e.message());
            }
        }
    }

    async fn orchestrate_once(&self) -> Result<(), Status> {
        let objects = self.objects();
        let nodes: Vec<Node> = list(&objects, kind::NODE);
        let networks: Vec<Network> = list(&objects, kind::NETWORK);
        if !networks.iter().any(|n| n.spec.ingress) {
            return self.create_ingress().await;
        }
        let services: Vec<Service> = list(&objects, kind::SERVICE);
        let mut tasks: Vec<Task> = list(&objects, kind::TASK);
        let quarantines: Vec<AddressQuarantine> = list(&objects, QUARANTINE_KIND);
        let strategy = objects
            .get_as::<Cluster>(kind::CLUSTER, kind::CLUSTER)
            .ok()
            .flatten()
            .map(|c| c.value.strategy)
            .unwrap_or_default();
        let now = now_ms();

        let mut reported = Vec::new();
        if let Ok(mut pending) = self.reports.lock() {
            let ids: std::collections::HashSet<&str> =
                tasks.iter().map(|t| t.id.as_str()).collect();
            pending.retain(|id, _| ids.contains(id.as_str()));
            for (i, task) in tasks.iter_mut().enumerate() {
                if let Some((node, report)) = pending.get(&task.id) {
                    if apply_report(task, node, report, now) {
                        reported.push(i);
                    }
                }
            }
        }
        let state = ClusterState {
            nodes: &nodes,
            networks: &networks,
            services: &services,
            tasks: &tasks,
            quarantines: &quarantines,
            strategy,
            now_ms: now,
        };
        let plan = reconcile(&state, &mut || new_node_id(rand::random()));
        // The plan's copy of a task already holds its report.
        let mut writes: HashMap<&str, &Task> = reported
            .iter()
            .map(|&i| (tasks[i].id.as_str(), &tasks[i]))
            .collect();
        for t in &plan.tasks {
            writes.insert(t.id.as_str(), t);
        }
        let mut commands = Vec::new();
        for task in writes.values() {
            commands.push(set(kind::TASK, &task.id, *task, None)?);
        }
        for id in &plan.deleted_tasks {
            commands.push(Command::delete(kind::TASK, id, None));
        }
        for q in &plan.quarantines {
            commands.push(set(QUARANTINE_KIND, &q.network, q, None)?);
        }
        // Services: only if unchanged since read, so a user's update wins.
        for service in &plan.services {
            let version = objects.get(kind::SERVICE, &service.id).map(|v| v.version);
            commands.push(set(kind::SERVICE, &service.id, service, version)?);
        }
        if commands.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            "orchestrator: {} task writes, {} deletes, {} services",
            writes.len(),
            plan.deleted_tasks.len(),
            plan.services.len()
        );
        for chunk in commands.chunks(BATCH) {
            match self.submit(Command::Batch(chunk.to_vec())).await? {
                Response::Conflict { kind, id, .. } => {
                    tracing::debug!("orchestrator: {kind}/{id} changed meanwhile; next pass");
                    return Ok(());
                }
                Response::NotFound { .. } | Response::Ok { .. } => {}
            }
        }
        Ok(())
    }
}

impl ManagerCtx {
    /// Creates the swarm's ingress network (Swarm's address range when free,
    /// else a /24 of the default pool). The next pass goes on from there.
    pub(super) async fn create_ingress(&self) -> Result<(), Status> {
        let request = |subnet: Option<&str>| NetworkRequest {
            name: INGRESS_NAME.to_string(),
            subnet: subnet.map(str::to_string),
            ingress: true,
            ..NetworkRequest::default()
        };
        match self.store_network(request(Some(INGRESS_SUBNET))).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == tonic::Code::InvalidArgument => {
                tracing::warn!(
                    "ingress network: {}; taking a subnet from the default pool",
                    e.message()
                );
                self.store_network(request(None)).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

fn set<T: serde::Serialize>(
    kind: &str,
    id: &str,
    value: &T,
    version: Option<u64>,
) -> Result<Command, Status> {
    Command::set(kind, id, value, version).map_err(|e| Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::objects::{TaskSpec, TaskState, TaskStatus};

    fn task(node: &str, state: TaskState) -> Task {
        Task {
            id: "t1".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            slot: 1,
            node_id: Some(node.into()),
            spec: TaskSpec::default(),
            spec_version: 1,
            networks: vec![],
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                timestamp_ms: 5,
                ..TaskStatus::default()
            },
            not_before_ms: 0,
            attempt: 0,
            created_at_ms: 0,
        }
    }

    fn report(state: TaskState) -> TaskReport {
        TaskReport {
            task_id: "t1".into(),
            state,
            message: "started".into(),
            err: None,
            exit_code: None,
            pid: Some(42),
        }
    }

    #[test]
    fn reports_move_tasks_forward_only_and_only_from_their_node() {
        let mut t = task("n1", TaskState::Assigned);
        assert!(apply_report(&mut t, "n1", &report(TaskState::Running), 10));
        assert_eq!(
            (t.status.state, t.status.timestamp_ms, t.status.pid),
            (TaskState::Running, 10, Some(42))
        );
        // The same report again changes nothing.
        assert!(!apply_report(&mut t, "n1", &report(TaskState::Running), 11));
        assert!(!apply_report(&mut t, "n2", &report(TaskState::Failed), 12));
        let mut orphaned = task("n1", TaskState::Orphaned);
        assert!(!apply_report(
            &mut orphaned,
            "n1",
            &report(TaskState::Running),
            13
        ));
    }
}
