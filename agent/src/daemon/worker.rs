//! Every node's session with the managers: a heartbeat each period to the
//! leader (or the next manager when one fails), learning the current manager
//! list and the role the managers hold for this node. A role change or a
//! removal is reported to the agent, which reconfigures itself. Gossip keys
//! and peers, and the swarm's networks, are published on watch channels for
//! gossip and the data plane. The leader's log fetches go to the node's log
//! reader, and its answers ride on the next heartbeat, sent at once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use shoal_control::api::{
    Assignment, GossipConfig, Heartbeat, HeartbeatResponse, LogChunk, LogFetch, TaskReport,
    DOWN_AFTER_MS, HEARTBEAT_PERIOD_MS,
};
use shoal_control::manager::ErrorCode;
use shoal_control::objects::{NetworkSpec, NodeResources, Role};
use shoal_control::proto::status::from_status;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::identity::NodeIdentity;
use super::peers::{from_json, to_json, Peers};
use super::vitals::HeartbeatLatency;

/// What the session tells the agent.
#[derive(Debug)]
pub enum SessionEvent {
    RoleChanged(Role),
    /// This node's certificate reached its renewal point.
    RenewDue,
    /// The swarm's unlock key changed (autolock on, off or rotated).
    AutolockChanged(Option<String>),
    ManagersChanged(Vec<String>),
    Removed,
}

pub struct Session {
    stop: CancellationToken,
    task: JoinHandle<()>,
    farewell: Farewell,
}

/// What the last heartbeat of an agent stopping for a restart needs.
struct Farewell {
    identity: Arc<RwLock<NodeIdentity>>,
    peers: Peers,
    resources: NodeResources,
    tasks: watch::Receiver<Vec<TaskReport>>,
}

/// What the managers hand out on each heartbeat, for the node's other parts.
#[derive(Clone)]
pub struct Handouts {
    pub gossip: watch::Sender<Option<GossipConfig>>,
    pub networks: watch::Sender<Option<Vec<NetworkSpec>>>,
    pub assignments: watch::Sender<Option<Vec<Assignment>>>,
    /// This node's finished tasks the managers still keep.
    pub history: watch::Sender<Option<Vec<String>>>,
}

/// What the node tells the managers on each heartbeat besides its id.
pub struct Reports {
    pub resources: NodeResources,
    /// Kept current by the task runner.
    pub tasks: watch::Receiver<Vec<TaskReport>>,
    /// The networks the data plane fails to build (id to error).
    pub network_failures: watch::Receiver<super::dataplane::NodeFailures>,
    /// Where each heartbeat's round trip is recorded.
    pub latency: Arc<HeartbeatLatency>,
}

/// The session's link to the node's log reader (`service logs`).
pub struct LogLink {
    /// The leader's fetches, one batch per heartbeat answer that has some.
    pub fetches: mpsc::Sender<Vec<LogFetch>>,
    /// The reader's answers, one batch per batch of fetches.
    pub chunks: mpsc::Receiver<Vec<LogChunk>>,
}

impl Handouts {
    /// Channels holding `networks` (the last list known) and no gossip key.
    pub fn new(networks: Option<Vec<NetworkSpec>>) -> Handouts {
        Handouts {
            gossip: watch::channel(None).0,
            networks: watch::channel(networks).0,
            assignments: watch::channel(None).0,
            history: watch::channel(None).0,
        }
    }

    fn take(&self, resp: &HeartbeatResponse) {
        offer(&self.gossip, &resp.gossip);
        offer(&self.networks, &resp.networks);
        // Before the assignments: a task they no longer list is found in
        // the history, so its logs are kept.
        offer(&self.history, &resp.history);
        offer(&self.assignments, &resp.assignments);
    }
}

/// Publishes `value` if it is known and differs, so watchers wake only on
/// a real change.
fn offer<T: Clone + PartialEq>(channel: &watch::Sender<Option<T>>, value: &Option<T>) {
    if value.is_none() {
        return;
    }
    channel.send_if_modified(|current| {
        let changed = current != value;
        if changed {
            current.clone_from(value);
        }
        changed
    });
}

impl Session {
    pub fn start(
        identity: Arc<RwLock<NodeIdentity>>,
        peers: Peers,
        events: mpsc::Sender<SessionEvent>,
        handouts: Handouts,
        reports: Reports,
        logs: LogLink,
    ) -> Session {
        let stop = CancellationToken::new();
        let farewell = Farewell {
            identity: identity.clone(),
            peers: peers.clone(),
            resources: reports.resources,
            tasks: reports.tasks.clone(),
        };
        let task = tokio::spawn(run(
            identity,
            peers,
            events,
            handouts,
            reports,
            logs,
            stop.clone(),
        ));
        Session {
            stop,
            task,
            farewell,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops the heartbeats, then tells the managers this agent is
    /// restarting and its tasks keep running: they keep the node and its
    /// tasks for `window` before they mark it Down. A zero window tells
    /// them nothing (the node goes Down as a silent one does).
    pub async fn stop_for_restart(self, window: Duration) {
        self.stop.cancel();
        let _ = self.task.await;
        if !window.is_zero() {
            self.farewell.send(window).await;
        }
    }
}

/// How long the last heartbeat may wait for one manager's answer.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

impl Farewell {
    /// Sends the last heartbeat, with the restart window, to the managers
    /// in turn (the leader first) until one answers.
    async fn send(&self, window: Duration) {
        let Ok(me) = self.identity.read().map(|i| i.clone()) else {
            return;
        };
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let Ok(json) = to_json(&Heartbeat {
            node_id: me.node_id.clone(),
            resources: Some(self.resources),
            tasks: self.tasks.borrow().clone(),
            logs: Vec::new(),
            restart_window_ms: Some(window_ms),
            network_failures: None,
            build_failures: None,
        }) else {
            return;
        };
        for addr in me.managers.iter().take(3) {
            let reply =
                tokio::time::timeout(FAREWELL_TIMEOUT, self.peers.heartbeat(addr, json.clone()));
            if let Ok(Ok(_)) = reply.await {
                tracing::info!(
                    target: "shoal::lifecycle",
                    "told the managers ({addr}) this agent is restarting: they keep this node's tasks for up to {} s",
                    window.as_secs()
                );
                return;
            }
        }
        tracing::warn!(
            target: "shoal::lifecycle",
            "no manager answered this agent's last heartbeat: if it is not back within {} s \
             the managers mark the node Down and start its tasks elsewhere",
            DOWN_AFTER_MS / 1000
        );
    }
}

async fn run(
    identity: Arc<RwLock<NodeIdentity>>,
    peers: Peers,
    events: mpsc::Sender<SessionEvent>,
    handouts: Handouts,
    reports: Reports,
    mut logs: LogLink,
    stop: CancellationToken,
) {
    let mut next = 0usize;
    let mut period = Duration::from_millis(HEARTBEAT_PERIOD_MS);
    loop {
        // Log answers do not wait for the period: `service logs` does.
        let mut chunks = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => Vec::new(),
            Some(chunks) = logs.chunks.recv() => chunks,
        };
        while let Ok(more) = logs.chunks.try_recv() {
            chunks.extend(more);
        }
        let Ok(me) = identity.read().map(|i| i.clone()) else {
            return;
        };
        if me.managers.is_empty() {
            continue;
        }
        let addr = me.managers[next % me.managers.len()].clone();
        let Ok(json) = to_json(&Heartbeat {
            node_id: me.node_id.clone(),
            resources: Some(reports.resources),
            tasks: reports.tasks.borrow().clone(),
            logs: chunks,
            network_failures: Some(reports.network_failures.borrow().networks.clone()),
            build_failures: Some(reports.network_failures.borrow().build.clone()),
            restart_window_ms: None,
        }) else {
            return;
        };
        let sent = std::time::Instant::now();
        let reply =
            tokio::time::timeout(Duration::from_secs(2), peers.heartbeat(&addr, json)).await;
        match &reply {
            Ok(Ok(_)) => reports.latency.answered(sent.elapsed()),
            _ => reports.latency.failed(),
        }
        match reply {
            Ok(Ok(json)) => {
                let Ok(resp) = from_json::<HeartbeatResponse>(&json) else {
                    continue;
                };
                period = Duration::from_millis(resp.period_ms.clamp(100, 10_000));
                next = 0;
                handouts.take(&resp);
                if !resp.log_fetches.is_empty() {
                    // A reader that is behind or gone loses the batch; the
                    // leader asks again.
                    let _ = logs.fetches.try_send(resp.log_fetches);
                }
                if !resp.managers.is_empty() && resp.managers != me.managers {
                    let _ = events
                        .send(SessionEvent::ManagersChanged(resp.managers))
                        .await;
                }
                if resp.role != me.role {
                    let _ = events.send(SessionEvent::RoleChanged(resp.role)).await;
                }
            }
            Ok(Err(status)) if from_status(&addr, &status).code() == ErrorCode::Removed => {
                let _ = events.send(SessionEvent::Removed).await;
            }
            _ => next += 1,
        }
    }
}
