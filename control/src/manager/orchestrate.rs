//! The leader's desired-state driver: each pass folds the nodes' task
//! reports into the tasks, runs one `orchestrator::reconcile` on a snapshot
//! of the store, and commits the plan in batches. It runs every tick and on
//! every applied change; followers skip it, and a new leader picks up from
//! the store.

use crate::error_chain::ErrorChain;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{apply_report, now_ms, Link, Manager, ManagerError, Store};
use crate::objects::{
    new_task_id, Cluster, Network, Node, Service, Task, CLUSTER_ID, DEFAULT_TASK_HISTORY_LIMIT,
};
use crate::orchestrator::{reconcile, AddressQuarantine, ClusterState};
use crate::store::{Command, Response};

/// How often a pass runs when nothing changes (restart delays, update
/// monitors and delays are counted in these ticks).
const TICK: Duration = Duration::from_millis(250);
/// How long a burst of writes may take to land before the pass it wakes.
const SETTLE: Duration = Duration::from_millis(20);
/// Writes per Raft entry, so one pass over many tasks makes entries of a
/// sane size.
const BATCH: usize = 200;

/// What one pass committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub task_writes: usize,
    pub task_deletes: usize,
    pub services: usize,
}

impl<S: Store, L: Link> Manager<S, L> {
    /// The driver, until `stop`: a pass every tick and after every applied
    /// change, on the leader only.
    pub async fn run_orchestrator(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut applied = self.store.watch_applied();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(SETTLE).await;
                }
            }
            if !self.is_leader() {
                continue;
            }
            if let Err(e) = self.orchestrate_once().await {
                tracing::debug!("orchestration pass: {}", e.chain());
            }
        }
    }

    /// One pass: reports in, reconcile, commit. A write that conflicts ends
    /// the pass; the next one starts from a fresh read.
    pub async fn orchestrate_once(&self) -> Result<PassOutcome, ManagerError> {
        let objects = self.objects();
        let networks: Vec<Network> = self.all(&objects);
        if self.wants_default_ingress(&objects)? {
            self.create_ingress().await?;
            return Ok(PassOutcome::default());
        }
        let nodes: Vec<Node> = self.all(&objects);
        let services: Vec<Service> = self.all(&objects);
        let mut tasks: Vec<Task> = self.all(&objects);
        let quarantines: Vec<AddressQuarantine> = self.all(&objects);
        let cluster = objects.one::<Cluster>(CLUSTER_ID).ok().flatten();
        let strategy = cluster
            .as_ref()
            .map(|c| c.value.strategy)
            .unwrap_or_default();
        let task_history_limit = cluster
            .as_ref()
            .map_or(DEFAULT_TASK_HISTORY_LIMIT, |c| c.value.task_history_limit);
        let now = now_ms();

        let mut reported = Vec::new();
        {
            let mut dispatch = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
            let ids: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
            dispatch.reports.retain(|id, _| ids.contains(id.as_str()));
            for (i, task) in tasks.iter_mut().enumerate() {
                if let Some((node, report)) = dispatch.reports.get(&task.id) {
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
            task_history_limit,
            now_ms: now,
        };
        let plan = reconcile(&state, &mut new_task_id);
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
            commands.push(Command::put(*task, None).map_err(ManagerError::store)?);
        }
        for id in &plan.deleted_tasks {
            commands.push(Command::remove::<Task>(id, None));
        }
        for q in &plan.quarantines {
            commands.push(Command::put(q, None).map_err(ManagerError::store)?);
        }
        // Services only if unchanged since read, so a user's update wins.
        for service in &plan.services {
            let version = objects.version_of::<Service>(&service.id);
            commands.push(Command::put(service, Some(version)).map_err(ManagerError::store)?);
        }
        let outcome = PassOutcome {
            task_writes: writes.len(),
            task_deletes: plan.deleted_tasks.len(),
            services: plan.services.len(),
        };
        if commands.is_empty() {
            return Ok(outcome);
        }
        tracing::debug!(
            "orchestrator: {} task writes, {} deletes, {} services",
            outcome.task_writes,
            outcome.task_deletes,
            outcome.services
        );
        for chunk in commands.chunks(BATCH) {
            match self.submit(Command::Batch(chunk.to_vec())).await? {
                Response::Conflict { kind, id, .. } => {
                    tracing::debug!("orchestrator: {kind}/{id} changed meanwhile; next pass");
                    return Ok(outcome);
                }
                Response::NotFound { .. } | Response::Ok { .. } => {}
            }
        }
        Ok(outcome)
    }
}
