//! The node's task runner: makes what runs here match the managers'
//! assignments. A new assignment gets a sandbox on its networks (its
//! endpoints published in gossip) and its command started by the runtime;
//! a task the managers want stopped, or no longer list, is stopped, its
//! endpoints withdrawn and its state forgotten, except that a finished task
//! in the managers' history keeps its logs (for `service logs`) until it
//! leaves it. Every listed task's state goes back to the managers on each
//! heartbeat (a level, so nothing is lost with a heartbeat). Never decides
//! what should run: the managers do.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_control::api::{Assignment, TaskReport};
use shoal_control::objects::TaskState;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::{Exit, HealthStatus, ProcessState, Runtime};

/// How long a task gets between SIGTERM and SIGKILL, unless its spec says
/// (Docker's default).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often running tasks are checked for an exit.
const POLL: Duration = Duration::from_millis(200);
/// How long a new task of a service with published ports may take to
/// listen on them before it becomes a backend anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping task of a service with published ports keeps
/// running after it left the backends, so that every node's routing mesh
/// has stopped sending it new connections (gossip carries the change).
pub const PORT_DRAIN: Duration = Duration::from_secs(1);

/// The sandbox side of running a task: its network namespace on the task's
/// networks, and its endpoints in gossip. The real one is the data plane;
/// tests use a fake.
#[tonic::async_trait]
pub trait Sandboxes: Send + Sync + 'static {
    /// Builds the task's sandbox and publishes its endpoints; returns the
    /// sandbox's network namespace once it exists.
    async fn attach(&self, assignment: &Assignment) -> anyhow::Result<PathBuf>;
    /// Withdraws the task's endpoints; its sandbox goes with them.
    async fn detach(&self, task_id: &str) -> anyhow::Result<()>;
    /// Makes the task a backend of its service's published ports
    /// (`serving`), or takes it out of them while its sandbox and overlay
    /// entries stay. `attach` publishes a task that serves none yet.
    async fn serve(&self, assignment: &Assignment, serving: bool) -> anyhow::Result<()>;
    /// Whether process `pid` listens on every target port of `assignment`
    /// (its sandbox's sockets).
    fn listens(&self, pid: u32, assignment: &Assignment) -> bool;
    /// The private resolv.conf of the task `assignment` describes.
    fn resolv_conf(&self, assignment: &Assignment) -> String;
}

/// One task as this node knows it.
#[derive(Clone, Debug)]
struct Local {
    assignment: Option<Assignment>,
    report: TaskReport,
    /// A start or stop job is running for it.
    busy: bool,
    stop_requested: bool,
    /// Finished and no longer listed: kept only for its logs while the
    /// managers keep it in their history, and not reported (they know).
    retained: bool,
    /// Started, with a health check not yet passed: reported Starting.
    awaiting_health: bool,
}

/// What a finished job (or a step of one) tells the loop.
enum Outcome {
    /// The task's image is on the node; its sandbox and start follow.
    Prepared(String),
    /// The node cannot run the task (its image cannot be pulled).
    Rejected(String, String),
    /// The pid, and whether a health check must pass before it counts
    /// as running.
    Started(String, Result<(u32, bool), String>),
    /// The task and how its process ended, if the runtime knows.
    Stopped(String, Option<ProcessState>),
    /// A task that turned healthy is a backend of its ports and VIP now.
    Served(String),
}

pub struct TaskRunner {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// The start, stop and cleanup jobs the loop spawns.
    jobs: TaskTracker,
}

impl TaskRunner {
    /// Adopts the tasks a previous agent left, reports them, and starts the
    /// loop. `history` lists this node's finished tasks the managers keep;
    /// it is read whenever the assignments are, so it must change before
    /// them.
    pub async fn start(
        runtime: Arc<dyn Runtime>,
        sandboxes: Arc<dyn Sandboxes>,
        assignments: watch::Receiver<Option<Vec<Assignment>>>,
        history: watch::Receiver<Option<Vec<String>>>,
        reports: watch::Sender<Vec<TaskReport>>,
    ) -> TaskRunner {
        let stop = CancellationToken::new();
        let (done, done_rx) = mpsc::channel::<Outcome>(64);
        let jobs = TaskTracker::new();
        let mut state = Runner {
            runtime,
            sandboxes,
            tasks: BTreeMap::new(),
            history,
            reports,
            done,
            jobs: jobs.clone(),
        };
        state.adopt().await;
        let task = tokio::spawn(state.run(assignments, done_rx, stop.clone()));
        TaskRunner { stop, task, jobs }
    }

    /// Stops the loop and waits for the jobs it started; the tasks keep
    /// running (they are adopted on restart).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.jobs.close();
        self.jobs.wait().await;
    }
}

struct Runner {
    runtime: Arc<dyn Runtime>,
    sandboxes: Arc<dyn Sandboxes>,
    tasks: BTreeMap<String, Local>,
    history: watch::Receiver<Option<Vec<String>>>,
    reports: watch::Sender<Vec<TaskReport>>,
    done: mpsc::Sender<Outcome>,
    jobs: TaskTracker,
}

/// The runtime's view of `ids`, asked off the async threads (it reads
/// files and `/proc`).
async fn states_of(runtime: &Arc<dyn Runtime>, ids: Vec<String>) -> Vec<(String, ProcessState)> {
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .filter_map(|id| runtime.state(&id).map(|state| (id, state)))
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn report(task_id: &str, state: TaskState, message: &str) -> TaskReport {
    TaskReport {
        task_id: task_id.to_string(),
        state,
        message: message.to_string(),
        err: None,
        exit_code: None,
        pid: None,
    }
}

/// The report for a process that ended.
fn exited(task_id: &str, exit: Exit, stop_requested: bool) -> TaskReport {
    let mut r = report(task_id, TaskState::Failed, "");
    r.exit_code = exit.code();
    if stop_requested {
        r.state = TaskState::Shutdown;
        r.message = "shut down".into();
        return r;
    }
    match exit {
        Exit::Code(0) => {
            r.state = TaskState::Complete;
            r.message = "finished".into();
        }
        Exit::Code(code) => r.err = Some(format!("task: non-zero exit ({code})")),
        Exit::Signal(signal) => r.err = Some(format!("task: killed by signal {signal}")),
        Exit::Unknown => r.err = Some("task: exited while the agent was down".into()),
        Exit::OomKilled => {
            r.err = Some(format!(
                "task: non-zero exit ({}): OOM killed",
                128 + libc::SIGKILL
            ))
        }
    }
    r
}

impl Runner {
    /// Picks up the tasks a previous agent left running (or exited). An
    /// exited one is reported only if the managers still list it: if not,
    /// they know how it ended better than its exit code tells (a stop they
    /// asked for, say).
    async fn adopt(&mut self) {
        let runtime = self.runtime.clone();
        let ids = tokio::task::spawn_blocking(move || runtime.tasks())
            .await
            .unwrap_or_default();
        for (id, state) in states_of(&self.runtime, ids).await {
            let (report, retained) = match state {
                ProcessState::Running { pid } => {
                    let mut r = report(&id, TaskState::Running, "adopted after an agent restart");
                    r.pid = Some(pid);
                    (r, false)
                }
                ProcessState::Exited(exit) => (exited(&id, exit, false), true),
            };
            self.tasks.insert(
                id,
                Local {
                    assignment: None,
                    report,
                    busy: false,
                    stop_requested: false,
                    retained,
                    awaiting_health: false,
                },
            );
        }
        self.publish();
    }

    async fn run(
        mut self,
        mut assignments: watch::Receiver<Option<Vec<Assignment>>>,
        mut done_rx: mpsc::Receiver<Outcome>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = assignments.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                Some(outcome) = done_rx.recv() => self.finished(outcome),
                _ = tick.tick() => {}
            }
            let current = assignments.borrow_and_update().clone();
            if let Some(list) = current {
                self.reconcile(&list);
            }
            self.poll_exits().await;
            self.poll_health().await;
            self.publish();
        }
    }

    /// Starts what is assigned and wanted, stops what is not.
    fn reconcile(&mut self, list: &[Assignment]) {
        let listed: BTreeMap<&str, &Assignment> =
            list.iter().map(|a| (a.task_id.as_str(), a)).collect();
        for assignment in list {
            let id = assignment.task_id.as_str();
            let known = self.tasks.contains_key(id);
            let wanted = assignment.desired_state <= TaskState::Running;
            if !known {
                if !wanted {
                    // Never started here: nothing to stop.
                    self.tasks.insert(
                        id.to_string(),
                        Local {
                            assignment: Some(assignment.clone()),
                            report: report(id, TaskState::Shutdown, "shut down before it started"),
                            busy: false,
                            stop_requested: true,
                            retained: false,
                            awaiting_health: false,
                        },
                    );
                    continue;
                }
                let first = match assignment.spec.container {
                    Some(_) => report(id, TaskState::Preparing, "preparing"),
                    None => report(id, TaskState::Starting, "preparing the sandbox"),
                };
                self.tasks.insert(
                    id.to_string(),
                    Local {
                        assignment: Some(assignment.clone()),
                        report: first,
                        busy: true,
                        stop_requested: false,
                        retained: false,
                        awaiting_health: false,
                    },
                );
                self.spawn_start(assignment.clone());
                continue;
            }
            if let Some(local) = self.tasks.get_mut(id) {
                local.assignment = Some(assignment.clone());
                local.retained = false;
                if !wanted && !local.stop_requested {
                    local.stop_requested = true;
                    self.request_stop(id);
                }
            }
        }
        let unlisted: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !listed.contains_key(id.as_str()))
            .cloned()
            .collect();
        let history: Option<BTreeSet<String>> = self
            .history
            .borrow()
            .as_ref()
            .map(|ids| ids.iter().cloned().collect());
        for id in unlisted {
            let Some(local) = self.tasks.get_mut(&id) else {
                continue;
            };
            if local.busy {
                continue;
            }
            let in_history = history.as_ref().is_some_and(|h| h.contains(&id));
            if local.report.state.is_final() && in_history {
                // The managers have its final state; its logs stay.
                local.retained = true;
            } else if local.report.state.is_final() {
                // Nor do they keep it any longer: forget it, logs and all.
                self.tasks.remove(&id);
                let runtime = self.runtime.clone();
                self.jobs.spawn_blocking(move || {
                    if let Err(e) = runtime.remove(&id) {
                        tracing::debug!("removing task state: {}", e.chain());
                    }
                });
            } else if !local.stop_requested {
                local.stop_requested = true;
                self.request_stop(&id);
            }
        }
    }

    fn request_stop(&mut self, id: &str) {
        let Some(local) = self.tasks.get_mut(id) else {
            return;
        };
        if local.busy {
            // A start is running; the stop follows when it ends.
            return;
        }
        local.busy = true;
        let grace = super::launch::stop_grace(local.assignment.as_ref(), STOP_GRACE);
        let serving = local
            .assignment
            .clone()
            .filter(|a| !a.ports.is_empty() && !a.networks.is_empty())
            .filter(|_| local.report.state == TaskState::Running);
        let (runtime, sandboxes, done, id) = (
            self.runtime.clone(),
            self.sandboxes.clone(),
            self.done.clone(),
            id.to_string(),
        );
        self.jobs.spawn(async move {
            // Out of the load balancers first, and given the time every
            // node needs to learn it, then stopped.
            if let Some(assignment) = serving {
                match sandboxes.serve(&assignment, false).await {
                    Ok(()) => tokio::time::sleep(PORT_DRAIN).await,
                    Err(e) => tracing::warn!("task {id}: leaving the published ports: {e:#}"),
                }
            }
            if let Err(e) = sandboxes.detach(&id).await {
                tracing::warn!("task {id}: withdrawing its endpoints: {e:#}");
            }
            let stop_id = id.clone();
            let stopped = tokio::task::spawn_blocking(move || {
                let result = runtime.stop(&stop_id, grace);
                (result, runtime.state(&stop_id))
            })
            .await;
            let state = match stopped {
                Ok((result, state)) => {
                    if let Err(e) = result {
                        tracing::debug!("task {id}: stop: {}", e.chain());
                    }
                    state
                }
                Err(_) => None,
            };
            let _ = done.send(Outcome::Stopped(id, state)).await;
        });
    }

    fn spawn_start(&self, assignment: Assignment) {
        let (runtime, sandboxes, done) = (
            self.runtime.clone(),
            self.sandboxes.clone(),
            self.done.clone(),
        );
        self.jobs.spawn(async move {
            let id = assignment.task_id.clone();
            if let Some(missing) = super::launch::missing_files(&assignment) {
                let _ = done.send(Outcome::Rejected(id, missing)).await;
                return;
            }
            if assignment.spec.container.is_some() {
                let pulling = super::launch::launch(&assignment, PathBuf::new(), String::new());
                let runtime = runtime.clone();
                let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&pulling)).await;
                let outcome = match prepared {
                    Ok(Ok(())) => Outcome::Prepared(id.clone()),
                    Ok(Err(e)) => Outcome::Rejected(id.clone(), e.chain().to_string()),
                    Err(e) => Outcome::Rejected(id.clone(), format!("preparing: {}", e.chain())),
                };
                let rejected = matches!(outcome, Outcome::Rejected(..));
                let _ = done.send(outcome).await;
                if rejected {
                    return;
                }
            }
            let result = async {
                let netns = sandboxes
                    .attach(&assignment)
                    .await
                    .map_err(|e| format!("sandbox: {e:#}"))?;
                let launch =
                    super::launch::launch(&assignment, netns, sandboxes.resolv_conf(&assignment));
                let started = tokio::task::spawn_blocking(move || {
                    let pid = runtime.start(&launch)?;
                    Ok((pid, runtime.health(&launch.task_id).is_some()))
                })
                .await
                .map_err(|e| e.chain().to_string())?
                .map_err(|e: crate::executor::ExecutorError| e.chain().to_string())?;
                // A task with a health check serves once healthy
                // (`poll_health`), others once they listen.
                if !assignment.networks.is_empty() && !started.1 {
                    serve_once_listening(&*sandboxes, &assignment, started.0).await;
                }
                Ok(started)
            }
            .await;
            if result.is_err() {
                let _ = sandboxes.detach(&id).await;
            }
            let _ = done.send(Outcome::Started(id, result)).await;
        });
    }

    fn finished(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Prepared(id) => {
                if let Some(local) = self.tasks.get_mut(&id) {
                    local.report = report(&id, TaskState::Starting, "preparing the sandbox");
                }
            }
            Outcome::Rejected(id, err) => {
                let Some(local) = self.tasks.get_mut(&id) else {
                    return;
                };
                local.busy = false;
                let mut r = report(&id, TaskState::Rejected, "preparing failed");
                r.err = Some(err);
                local.report = r;
            }
            Outcome::Started(id, result) => {
                let Some(local) = self.tasks.get_mut(&id) else {
                    return;
                };
                local.busy = false;
                match result {
                    Ok((pid, health_check)) => {
                        // Swarm's rule: with a health check, a task runs
                        // once it is healthy.
                        let mut r = if health_check {
                            report(&id, TaskState::Starting, "waiting for the health check")
                        } else {
                            report(&id, TaskState::Running, "started")
                        };
                        r.pid = Some(pid);
                        local.report = r;
                        local.awaiting_health = health_check;
                        if local.stop_requested {
                            self.request_stop(&id);
                        }
                    }
                    Err(err) => {
                        let mut r = report(&id, TaskState::Failed, "starting failed");
                        r.err = Some(err);
                        local.report = r;
                    }
                }
            }
            Outcome::Served(id) => {
                let Some(local) = self.tasks.get_mut(&id) else {
                    return;
                };
                local.busy = false;
                if local.stop_requested {
                    self.request_stop(&id);
                }
            }
            Outcome::Stopped(id, state) => {
                let Some(local) = self.tasks.get_mut(&id) else {
                    return;
                };
                local.busy = false;
                if !local.report.state.is_final() {
                    let exit = match state {
                        Some(ProcessState::Exited(exit)) => exit,
                        _ => Exit::Unknown,
                    };
                    local.report = exited(&id, exit, true);
                }
            }
        }
    }

    /// Notices tasks whose process ended on its own.
    async fn poll_exits(&mut self) {
        let running: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, l)| !l.busy && (l.report.state == TaskState::Running || l.awaiting_health))
            .map(|(id, _)| id.clone())
            .collect();
        if running.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        for (id, state) in states_of(&self.runtime, running).await {
            let ProcessState::Exited(exit) = state else {
                continue;
            };
            // A start or stop job may have begun meanwhile: it reports.
            if let Some(local) = self
                .tasks
                .get_mut(&id)
                .filter(|l| !l.busy && (l.report.state == TaskState::Running || l.awaiting_health))
            {
                local.awaiting_health = false;
                local.report = exited(&id, exit, local.stop_requested);
                ended.push(id);
            }
        }
        for id in ended {
            let sandboxes = self.sandboxes.clone();
            self.jobs.spawn(async move {
                if let Err(e) = sandboxes.detach(&id).await {
                    tracing::warn!("task {id}: withdrawing its endpoints: {e:#}");
                }
            });
        }
    }

    /// Follows the health of started tasks: a task waiting for its check
    /// runs once healthy; an unhealthy one leaves the load balancers at
    /// once, is stopped and reported failed, so the managers replace it.
    async fn poll_health(&mut self) {
        let watched: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, l)| {
                !l.busy
                    && !l.stop_requested
                    && (l.report.state == TaskState::Running || l.awaiting_health)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if watched.is_empty() {
            return;
        }
        let runtime = self.runtime.clone();
        let health = tokio::task::spawn_blocking(move || {
            watched
                .into_iter()
                .filter_map(|id| runtime.health(&id).map(|h| (id, h.status)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut unhealthy = Vec::new();
        for (id, status) in health {
            let Some(local) = self.tasks.get_mut(&id) else {
                continue;
            };
            if local.busy || local.stop_requested {
                continue;
            }
            match status {
                HealthStatus::Healthy if local.awaiting_health => {
                    local.awaiting_health = false;
                    let pid = local.report.pid;
                    local.report = report(&id, TaskState::Running, "started");
                    local.report.pid = pid;
                    // Healthy: now a backend of its published ports and
                    // virtual IP.
                    // Busy meanwhile, so a stop waits for it.
                    if let Some(assignment) =
                        local.assignment.clone().filter(|a| !a.networks.is_empty())
                    {
                        local.busy = true;
                        let (sandboxes, done) = (self.sandboxes.clone(), self.done.clone());
                        self.jobs.spawn(async move {
                            if let Err(e) = sandboxes.serve(&assignment, true).await {
                                tracing::warn!(
                                    "task {}: joining the published ports: {e:#}",
                                    assignment.task_id
                                );
                            }
                            let _ = done.send(Outcome::Served(assignment.task_id)).await;
                        });
                    }
                }
                HealthStatus::Unhealthy => {
                    local.awaiting_health = false;
                    unhealthy.push(id);
                }
                _ => {}
            }
        }
        for id in unhealthy {
            // The stop is asked while the report still says Running, so a
            // task serving published ports leaves them (and is given the
            // drain time) before it is stopped.
            self.request_stop(&id);
            if let Some(local) = self.tasks.get_mut(&id) {
                let mut r = report(&id, TaskState::Failed, "unhealthy");
                r.err = Some("task: unhealthy container".into());
                local.report = r;
                local.stop_requested = true;
            }
        }
    }

    fn publish(&self) {
        let reports: Vec<TaskReport> = self
            .tasks
            .values()
            .filter(|l| !l.retained)
            .map(|l| l.report.clone())
            .collect();
        self.reports.send_if_modified(|current| {
            let changed = *current != reports;
            if changed {
                *current = reports;
            }
            changed
        });
    }
}

/// Makes a new task a backend of its published ports and virtual IP once
/// it listens on the ports' targets (or after [`LISTEN_WAIT`]): until then
/// the mesh would send it connections it refuses.
async fn serve_once_listening(sandboxes: &dyn Sandboxes, assignment: &Assignment, pid: u32) {
    let started = tokio::time::Instant::now();
    while !sandboxes.listens(pid, assignment) {
        if started.elapsed() >= LISTEN_WAIT {
            tracing::warn!(
                "task {}: not listening on its published ports' targets after {} s; \
                 serving them anyway",
                assignment.task_id,
                LISTEN_WAIT.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = sandboxes.serve(assignment, true).await {
        tracing::warn!(
            "task {}: joining the published ports: {e:#}",
            assignment.task_id
        );
    }
}

#[cfg(test)]
mod tests;
