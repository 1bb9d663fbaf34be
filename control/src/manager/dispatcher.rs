//! The dispatcher: the managers' side of every node's heartbeat session.
//! A heartbeat is recorded on the leader (the node is alive, its task
//! reports wait for the next orchestrator pass, its log answers go to the
//! broker); a follower relays it there. Every answer tells the node its
//! role, the managers, the gossip keys and peers, the networks and its
//! tasks. The down detector marks silent nodes Down, judged from the
//! heartbeats and this node's gossip view, both passed in; a node whose
//! agent said it is restarting keeps its tasks for the window it asked for
//! (kept in the store, so a new leader honours it too).

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::payloads::PayloadIndex;
use super::{Call, Caller, Link, Manager, ManagerError, Store};
use crate::api::{
    Assignment, Heartbeat, HeartbeatResponse, TaskReport, DOWN_AFTER_IF_ALIVE_MS, DOWN_AFTER_MS,
    HEARTBEAT_PERIOD_MS, MAX_RESTART_WINDOW_MS,
};
use crate::objects::{
    render_hostname, BuildFailures, Node, NodeResources, NodeState, SandboxFailure, Service, Task,
    TaskNames, TaskState,
};
use crate::store::Objects;

/// How often the down detector looks.
const DETECT_EVERY: Duration = Duration::from_millis(250);
/// The longest network error a node's report keeps (characters).
pub const MAX_NETWORK_ERROR_CHARS: usize = 512;

/// The most sandbox failures, and port failures, a node's report keeps.
pub const MAX_BUILD_FAILURES: usize = 64;

/// `8080/tcp` or `53/udp`: a published port as reports name it.
fn is_port_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(port, protocol)| {
        port.parse::<u16>().is_ok_and(|p| p > 0) && matches!(protocol, "tcp" | "udp")
    })
}

/// What this node's gossip says of each member, by node id: `true` while
/// alive or suspect. Kept by the data plane, read by the down detector,
/// which marks a silent node Down quickly only when gossip agrees.
#[derive(Clone, Debug, Default)]
pub struct GossipView(Arc<RwLock<HashMap<String, bool>>>);

impl GossipView {
    /// Replaces the view with what gossip says now.
    pub fn replace(&self, members: HashMap<String, bool>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = members;
    }

    /// Whether gossip sees `node` alive (an unknown node is not).
    pub fn is_alive(&self, node: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .copied()
            .unwrap_or(false)
    }
}

/// The dispatcher's state; meaningful on the leader.
#[derive(Default)]
pub(super) struct Dispatch {
    /// Last heartbeat per node id.
    pub(super) seen: HashMap<String, Instant>,
    /// When this manager last became leader: nodes get a grace period.
    leader_since: Option<Instant>,
    /// Task reports waiting for the next orchestrator pass, by task id:
    /// the reporting node and its report.
    pub(super) reports: HashMap<String, (String, TaskReport)>,
    assignments: AssignmentCache,
}

impl Dispatch {
    pub(super) fn seen(&mut self, node: &str, at: Instant) {
        self.seen.insert(node.to_string(), at);
    }
}

/// Assignments and finished tasks per node id, computed once per applied
/// log index.
#[derive(Default)]
struct AssignmentCache {
    index: Option<u64>,
    by_node: Arc<HashMap<String, Vec<Assignment>>>,
    history: Arc<HashMap<String, Vec<String>>>,
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

/// The largest heartbeat answer (JSON bytes) a manager sends and an agent
/// reads: a node given more tasks than fit is told so, with an error that
/// names it, rather than failing to decode an answer it never gets.
pub const MAX_HEARTBEAT_ANSWER_BYTES: usize = 32 << 20;
/// The gRPC message limit for heartbeat answers: the JSON and its framing.
pub const MAX_HEARTBEAT_MESSAGE_BYTES: usize = MAX_HEARTBEAT_ANSWER_BYTES + (64 << 10);

/// The most CPUs a node may offer (Linux's largest `NR_CPUS` is 8192).
pub const MAX_NODE_CPUS: u64 = 16_384;
/// The most memory a node may offer: 4 PiB, what 5-level paging addresses.
pub const MAX_NODE_MEMORY_BYTES: u64 = 4 << 50;

/// What a node says it offers, within [`MAX_NODE_CPUS`] and
/// [`MAX_NODE_MEMORY_BYTES`]: the scheduler adds and compares these, so a
/// node cannot make itself look infinite (or overflow the sums) by
/// reporting absurd figures.
pub fn bounded_resources(reported: NodeResources) -> NodeResources {
    NodeResources {
        nano_cpus: reported.nano_cpus.min(MAX_NODE_CPUS * 1_000_000_000),
        memory_bytes: reported.memory_bytes.min(MAX_NODE_MEMORY_BYTES),
    }
}

/// Refuses an answer over `limit` bytes ([`MAX_HEARTBEAT_ANSWER_BYTES`]),
/// loudly.
pub(super) fn check_answer_size(
    node: &str,
    tasks: usize,
    answer: &HeartbeatResponse,
    limit: usize,
) -> Result<(), ManagerError> {
    let bytes = serde_json::to_vec(answer)
        .map_err(ManagerError::store)?
        .len();
    if bytes > limit {
        let too_large = ManagerError::HeartbeatTooLarge {
            node: node.to_string(),
            tasks,
            bytes,
            limit,
        };
        tracing::error!("{too_large}");
        return Err(too_large);
    }
    Ok(())
}

/// Every node's unfinished tasks (given to it and not yet final), and the
/// ids of its finished ones still in the store.
fn assignments(
    tasks: Vec<Task>,
    services: &[Service],
    nodes: &[Node],
    payloads: &PayloadIndex,
) -> (
    HashMap<String, Vec<Assignment>>,
    HashMap<String, Vec<String>>,
) {
    let services: HashMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut by_node: HashMap<String, Vec<Assignment>> = HashMap::new();
    let mut history: HashMap<String, Vec<String>> = HashMap::new();
    for task in tasks {
        let Some(node_id) = task.node_id.clone() else {
            continue;
        };
        if task.status.state.is_final() {
            history.entry(node_id).or_default().push(task.id);
            continue;
        }
        if task.status.state < TaskState::Assigned {
            continue;
        }
        let ports = services
            .get(task.service_id.as_str())
            .map(|s| s.spec.ports.clone())
            .unwrap_or_default();
        let mut spec = task.spec.clone();
        if let Some(container) = spec.container.as_mut() {
            container.hostname = task_hostname(&task, &container.hostname, nodes);
        }
        let (secrets, configs) = (
            payloads.secret_files(&task.spec.secrets),
            payloads.config_files(&task.spec.configs),
        );
        by_node.entry(node_id).or_default().push(Assignment {
            name: task.name(),
            task_id: task.id,
            service_id: task.service_id,
            service_name: task.service_name,
            desired_state: task.desired_state,
            spec,
            networks: task.networks,
            ports,
            secrets,
            configs,
        });
    }
    (by_node, history)
}

/// The task's `--hostname` with Docker's placeholders filled in; a
/// template that cannot be filled (an old spec) leaves the node's default.
fn task_hostname(task: &Task, template: &str, nodes: &[Node]) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let node_id = task.node_id.as_deref().unwrap_or("");
    let node_hostname = nodes
        .iter()
        .find(|n| n.id == node_id)
        .map_or("", |n| n.hostname.as_str());
    let names = TaskNames {
        service_id: &task.service_id,
        service_name: &task.service_name,
        task_id: &task.id,
        slot: task.slot,
        node_id,
        node_hostname,
    };
    render_hostname(template, &names).unwrap_or_else(|e| {
        tracing::warn!(task = %task.id, "--hostname: {e}");
        String::new()
    })
}

/// The nodes to mark Down at `now` (`now_ms` on the wall clock): not Down
/// yet, not within the restart window their agent announced
/// ([`Node::restarting_until_ms`]), and silent (no heartbeat since `since`
/// or their last one) for [`DOWN_AFTER_MS`] when gossip also lost them or
/// never knew them, or for [`DOWN_AFTER_IF_ALIVE_MS`] when gossip still
/// sees them alive, so a lossy link does not get a live node's tasks
/// replaced.
pub(super) fn silent_nodes<'a>(
    nodes: &'a [Node],
    seen: &HashMap<String, Instant>,
    since: Instant,
    gossip: &GossipView,
    now: Instant,
    now_ms: u64,
) -> Vec<&'a Node> {
    nodes
        .iter()
        .filter(|node| {
            let last = seen.get(&node.id).copied().unwrap_or(since).max(since);
            let limit = if gossip.is_alive(&node.id) {
                DOWN_AFTER_IF_ALIVE_MS
            } else {
                DOWN_AFTER_MS
            };
            node.state != NodeState::Down
                && !restarting(node, now_ms)
                && now.saturating_duration_since(last) > Duration::from_millis(limit)
        })
        .collect()
}

/// Whether `node`'s agent is within the restart window it announced.
pub(super) fn restarting(node: &Node, now_ms: u64) -> bool {
    node.restarting_until_ms.is_some_and(|until| now_ms < until)
}

/// What a heartbeat makes of its node's restart window at `now_ms`: the
/// announced window (bounded by [`MAX_RESTART_WINDOW_MS`]) from the last
/// heartbeat of a stopping agent, none from any other (the agent is back).
pub(super) fn restart_window_after(heartbeat: &Heartbeat, now_ms: u64) -> Option<u64> {
    heartbeat
        .restart_window_ms
        .map(|window| now_ms.saturating_add(window.min(MAX_RESTART_WINDOW_MS)))
}

impl<S: Store, L: Link> Manager<S, L> {
    pub(super) fn dispatch(&self) -> std::sync::MutexGuard<'_, Dispatch> {
        self.dispatch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Dispatcher.Heartbeat`: records the node as alive (on the leader,
    /// marking it Ready) and answers what it needs. A follower relays the
    /// heartbeat to the leader, briefly, and passes on its log fetches.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatResponse, ManagerError> {
        let objects = self.objects();
        self.authorize_here(
            caller,
            Call::Heartbeat {
                node: &heartbeat.node_id,
            },
            &objects,
        )?;
        let node = objects
            .one::<Node>(&heartbeat.node_id)
            .map_err(ManagerError::store)?
            .ok_or_else(|| self.not_in_store(&heartbeat.node_id))?
            .value;
        let mut log_fetches = Vec::new();
        let (assignments, history) = self.assignments_for(&objects, &node.id);
        if self.is_leader() {
            let resources = heartbeat
                .resources
                .map_or(node.resources, bounded_resources);
            let restarting_until = restart_window_after(&heartbeat, super::now_ms());
            {
                // Only reports of tasks given to this node are kept: a node
                // cannot crowd out (or overwrite) another node's reports.
                let given: HashSet<&str> = assignments.iter().map(|a| a.task_id.as_str()).collect();
                let mut dispatch = self.dispatch();
                dispatch.seen(&node.id, Instant::now());
                for report in heartbeat.tasks {
                    if given.contains(report.task_id.as_str()) {
                        dispatch
                            .reports
                            .insert(report.task_id.clone(), (node.id.clone(), report));
                    }
                }
            }
            self.logs.deliver(&node.id, heartbeat.logs);
            log_fetches = self.logs.fetches_for(&node.id);
            let network_errors = match heartbeat.network_failures {
                Some(reported) if reported != node.network_errors => {
                    Some(self.bounded_network_errors(reported))
                }
                _ => None,
            }
            .filter(|errors| *errors != node.network_errors);
            let given: HashSet<String> = assignments.iter().map(|a| a.task_id.clone()).collect();
            let build_failures = heartbeat
                .build_failures
                .map(|reported| self.bounded_build_failures(reported, &given))
                .filter(|failures| *failures != node.build_failures);
            if node.state != NodeState::Ready
                || node.resources != resources
                || node.restarting_until_ms != restarting_until
                || network_errors.is_some()
                || build_failures.is_some()
            {
                let back = node.restarting_until_ms.is_some() && restarting_until.is_none();
                self.modify_node(&node.id, |n| {
                    let mut changed = n.state != NodeState::Ready
                        || n.resources != resources
                        || n.restarting_until_ms != restarting_until;
                    n.state = NodeState::Ready;
                    n.resources = resources;
                    n.restarting_until_ms = restarting_until;
                    if let Some(errors) = &network_errors {
                        changed |= n.network_errors != *errors;
                        n.network_errors.clone_from(errors);
                    }
                    if let Some(failures) = &build_failures {
                        changed |= n.build_failures != *failures;
                        n.build_failures.clone_from(failures);
                    }
                    Ok(changed)
                })
                .await?;
                if let Some(until) = restarting_until {
                    let window = until.saturating_sub(super::now_ms()) / 1000;
                    tracing::info!(
                        target: "shoal::lifecycle",
                        "node {} ({}) is restarting: its tasks are kept for up to {window} s",
                        node.id,
                        node.hostname
                    );
                } else if back {
                    tracing::info!(
                        target: "shoal::lifecycle",
                        "node {} ({}) is back from its restart",
                        node.id,
                        node.hostname
                    );
                }
            }
        } else if let Some(leader) = self.leader_addr() {
            let relay = self.link.heartbeat(&leader, &heartbeat);
            let period = Duration::from_millis(HEARTBEAT_PERIOD_MS);
            match tokio::time::timeout(period, relay).await {
                Ok(Ok(answer)) => log_fetches = answer.log_fetches,
                Ok(Err(e)) => tracing::debug!("relaying a heartbeat of {}: {}", node.id, e.chain()),
                Err(_) => tracing::debug!("relaying a heartbeat of {}: no answer", node.id),
            }
        }
        let tasks = assignments.len();
        let answer = HeartbeatResponse {
            role: node.role,
            managers: self.managers_leader_first(),
            period_ms: HEARTBEAT_PERIOD_MS,
            gossip: self.gossip_config(&node),
            networks: self.network_specs(),
            assignments: Some(assignments),
            history: Some(history),
            log_fetches,
        };
        check_answer_size(&node.id, tasks, &answer, MAX_HEARTBEAT_ANSWER_BYTES)?;
        Ok(answer)
    }

    /// A node's reported sandbox and port failures as kept: sandboxes of
    /// tasks given to the node (`given`) on networks of the swarm, ports
    /// written as `N/tcp|udp`, at most [`MAX_BUILD_FAILURES`] of each, each
    /// error cut to [`MAX_NETWORK_ERROR_CHARS`].
    fn bounded_build_failures(
        &self,
        reported: BuildFailures,
        given: &HashSet<String>,
    ) -> BuildFailures {
        let known = self.network_specs().unwrap_or_default();
        let cut = |error: String| error.chars().take(MAX_NETWORK_ERROR_CHARS).collect();
        let mut sandboxes: Vec<SandboxFailure> = reported
            .sandboxes
            .into_iter()
            .filter(|f| given.contains(&f.task_id) && known.iter().any(|n| n.id == f.network))
            .take(MAX_BUILD_FAILURES)
            .map(|f| SandboxFailure {
                error: cut(f.error),
                ..f
            })
            .collect();
        sandboxes.sort();
        sandboxes.dedup_by(|a, b| a.network == b.network && a.task_id == b.task_id);
        let ports = reported
            .ports
            .into_iter()
            .filter(|(port, _)| is_port_key(port))
            .take(MAX_BUILD_FAILURES)
            .map(|(port, error)| (port, cut(error)))
            .collect();
        BuildFailures { sandboxes, ports }
    }

    /// A node's reported network failures as kept: only networks of the
    /// swarm, each error cut to [`MAX_NETWORK_ERROR_CHARS`].
    fn bounded_network_errors(
        &self,
        reported: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let Some(known) = self.network_specs() else {
            return BTreeMap::new();
        };
        reported
            .into_iter()
            .filter(|(id, _)| known.iter().any(|n| &n.id == id))
            .map(|(id, error)| (id, error.chars().take(MAX_NETWORK_ERROR_CHARS).collect()))
            .collect()
    }

    /// The unfinished tasks assigned to `node`, and the ids of its
    /// finished ones still in the store.
    pub(super) fn assignments_for(
        &self,
        objects: &Objects,
        node: &str,
    ) -> (Vec<Assignment>, Vec<String>) {
        let index = objects.applied_index();
        let mut dispatch = self.dispatch();
        let cache = &mut dispatch.assignments;
        if cache.index != index || index.is_none() {
            let payloads = PayloadIndex::new(self.all(objects), self.all(objects));
            let (by_node, history) = assignments(
                self.all(objects),
                &self.all(objects),
                &self.all(objects),
                &payloads,
            );
            *cache = AssignmentCache {
                index,
                by_node: Arc::new(by_node),
                history: Arc::new(history),
            };
        }
        (
            cache.by_node.get(node).cloned().unwrap_or_default(),
            cache.history.get(node).cloned().unwrap_or_default(),
        )
    }

    /// Records that `node` was heard from (a new node, at its join).
    pub(super) fn heard_from(&self, node: &str) {
        self.dispatch().seen(node, Instant::now());
    }

    /// One look of the down detector at `now` (leader only): marks the
    /// silent nodes Down. A new leader waits [`DOWN_AFTER_MS`] first, so
    /// nodes have time to find it.
    pub async fn detect_down_once(&self, now: Instant) {
        let (since, seen) = {
            let mut dispatch = self.dispatch();
            if !self.is_leader() {
                dispatch.leader_since = None;
                return;
            }
            let since = *dispatch.leader_since.get_or_insert(now);
            if now.saturating_duration_since(since) < Duration::from_millis(DOWN_AFTER_MS) {
                return;
            }
            (since, dispatch.seen.clone())
        };
        let nodes = self.nodes();
        let silent: HashSet<&str> =
            silent_nodes(&nodes, &seen, since, &self.gossip, now, super::now_ms())
                .into_iter()
                .map(|n| n.id.as_str())
                .collect();
        for node in nodes.iter().filter(|n| silent.contains(n.id.as_str())) {
            let marked = self
                .modify_node(&node.id, |n| {
                    let changed = n.state != NodeState::Down;
                    n.state = NodeState::Down;
                    Ok(changed)
                })
                .await;
            match marked {
                Ok(_) => tracing::info!(
                    target: "shoal::lifecycle",
                    "node {} ({}) is down: its tasks are started elsewhere",
                    node.id,
                    node.hostname
                ),
                Err(e) => tracing::debug!("marking {} down: {}", node.id, e.chain()),
            }
        }
    }

    /// The down detector, until `stop`.
    pub async fn run_down_detector(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(DETECT_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.detect_down_once(Instant::now()).await;
        }
    }
}
