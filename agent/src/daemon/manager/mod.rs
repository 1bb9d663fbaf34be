//! The manager role: the Raft store, the manager API on port 2377 (mutual
//! TLS: Control, Ca, Dispatcher and Raft services), reachability probes and
//! the leader's node-down detector; networks and gossip keys and peers
//! handed out in heartbeat answers; the log broker of `service logs`.
//!
//! Reads answer from the local copy of the store, so they work without
//! quorum; writes go to the leader, forwarded if needed, and fail with the
//! quorum error when there is no majority.

mod api;
mod gossip;
mod logs;
mod networks;
mod orchestrate;
mod reach;
mod service_api;
mod services;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shoal_control::api::{no_quorum_message, DOWN_AFTER_IF_ALIVE_MS, DOWN_AFTER_MS};
use shoal_control::objects::{Cluster, Node, NodeState, Role};
use shoal_control::raft::{RaftNode, WriteError};
use shoal_control::store::{kind, AtRest, Command, Objects, Response};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::identity::{Certs, NodeIdentity, StateDir};
use super::peers::Peers;
use super::worker::SessionEvent;
pub use reach::Reach;

/// How long a commit may take before the write fails with the quorum error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything the manager's request handlers share.
pub struct ManagerCtx {
    pub identity: Arc<RwLock<NodeIdentity>>,
    pub certs: Arc<RwLock<Certs>>,
    pub raft: RaftNode,
    pub peers: Peers,
    pub reach: Reach,
    /// Last heartbeat per node id (meaningful on the leader).
    pub seen: Mutex<HashMap<String, Instant>>,
    /// When this manager last became leader; nodes get a grace period then.
    leader_since: Mutex<Option<Instant>>,
    /// Task reports from heartbeats, folded in by the leader's loop.
    reports: Mutex<orchestrate::Reports>,
    assignments: Mutex<orchestrate::AssignmentCache>,
    /// `service logs` fetches and answers (meaningful on the leader).
    logs: logs::LogExchange,
    /// This node's gossip view of the members.
    gossip: super::GossipView,
}

/// A running manager role; dropping it does not stop it, `stop` does.
pub struct Manager {
    pub ctx: Arc<ManagerCtx>,
    listen: SocketAddr,
    stop: CancellationToken,
    /// The API server has its own token so it can restart with a renewed
    /// certificate (tonic's TLS settings are fixed once serving).
    server: (JoinHandle<()>, CancellationToken),
    tasks: Vec<JoinHandle<()>>,
    /// The unlock key this node's keys are sealed with, as the agent last
    /// reported (see [`Manager::watch_autolock`]).
    sealed_with: Arc<Mutex<Option<String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ManagerCtx {
    pub fn me(&self) -> NodeIdentity {
        self.identity
            .read()
            .map(|i| i.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn objects(&self) -> Objects {
        self.raft.read()
    }

    /// Every node, by hostname.
    pub fn nodes(&self) -> Vec<Node> {
        let mut nodes: Vec<Node> = orchestrate::list(&self.objects(), kind::NODE);
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        nodes
    }

    /// A node and its version, by exact id.
    pub fn node(&self, id: &str) -> Option<(Node, u64)> {
        match self.objects().get_as::<Node>("node", id) {
            Ok(v) => v.map(|v| (v.value, v.version)),
            Err(e) => {
                tracing::error!("unreadable node object {id}: {e}");
                None
            }
        }
    }

    pub fn cluster(&self) -> Result<Cluster, Status> {
        self.objects()
            .get_as::<Cluster>("cluster", "cluster")
            .map_err(|e| Status::internal(e.to_string()))?
            .map(|v| v.value)
            .ok_or_else(|| Status::failed_precondition("the swarm has no cluster object yet"))
    }

    /// API addresses of the managers in the store.
    pub fn manager_addrs(&self) -> Vec<String> {
        let port = self.me().listen_port;
        self.nodes()
            .iter()
            .filter(|n| n.role == Role::Manager)
            .map(|n| format!("{}:{port}", n.addr))
            .collect()
    }

    /// The managers' API addresses with the leader's first, so nodes try it
    /// before the others.
    pub fn managers_leader_first(&self) -> Vec<String> {
        let mut managers = self.manager_addrs();
        let leader = self.leader_addr();
        managers.sort_by_key(|a| Some(a) != leader.as_ref());
        managers
    }

    /// `Some(addr)` of the leader's API, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        self.raft.leader().map(|(_, addr)| addr)
    }

    pub fn is_leader(&self) -> bool {
        let me = self.me();
        self.raft
            .leader()
            .is_some_and(|(id, _)| Some(id) == me.raft_id)
    }

    pub fn quorum_error(&self) -> Status {
        let managers = self.manager_addrs();
        let reachable = self.reach.count(&managers, &self.me().api_addr());
        Status::unavailable(no_quorum_message(reachable, managers.len().max(1)))
    }

    /// Commits `cmd` through Raft (this manager must be the leader).
    pub async fn submit(&self, cmd: Command) -> Result<Response, Status> {
        match self.raft.write_within(cmd, WRITE_TIMEOUT).await {
            Ok(resp) => Ok(resp),
            Err(WriteError::ForwardToLeader { .. }) | Err(WriteError::LeaderChanged) => Err(
                Status::unavailable("leadership moved while writing; retry the command"),
            ),
            Err(WriteError::NoLeader { .. }) | Err(WriteError::Timeout { .. }) => {
                Err(self.quorum_error())
            }
            Err(WriteError::Invalid(m)) => Err(Status::invalid_argument(m)),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    /// Stores a node object, failing on a concurrent change.
    pub async fn put_node(&self, node: &Node, expect_version: Option<u64>) -> Result<(), Status> {
        let value = serde_json::to_value(node).map_err(|e| Status::internal(e.to_string()))?;
        match self
            .submit(Command::Set {
                kind: "node".into(),
                id: node.id.clone(),
                value,
                expect_version,
            })
            .await?
        {
            Response::Conflict { .. } => Err(Status::aborted(format!(
                "node {} changed concurrently; retry the command",
                node.id
            ))),
            _ => Ok(()),
        }
    }

    /// Fails fast with the quorum error when no leader is known.
    pub fn require_leader(&self) -> Result<Option<String>, Status> {
        if self.is_leader() {
            return Ok(None);
        }
        self.leader_addr()
            .map(Some)
            .ok_or_else(|| self.quorum_error())
    }

    /// Leader only: marks Ready nodes that stopped heartbeating as Down:
    /// after [`DOWN_AFTER_MS`] of silence when gossip also lost them (or
    /// never knew them), after [`DOWN_AFTER_IF_ALIVE_MS`] when gossip still
    /// sees them alive, so a lossy link does not get a live node's tasks
    /// replaced.
    async fn detect_down(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let down_after = Duration::from_millis(DOWN_AFTER_MS);
        let down_if_alive = Duration::from_millis(DOWN_AFTER_IF_ALIVE_MS);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.is_leader() {
                if let Ok(mut since) = self.leader_since.lock() {
                    *since = None;
                }
                continue;
            }
            let since = match self.leader_since.lock() {
                Ok(mut s) => *s.get_or_insert_with(Instant::now),
                Err(_) => continue,
            };
            if since.elapsed() < down_after {
                continue;
            }
            for node in self.nodes() {
                let last = self
                    .seen
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&node.id).copied())
                    .unwrap_or(since);
                let gossip_alive = self
                    .gossip
                    .read()
                    .ok()
                    .and_then(|g| g.get(&node.id).copied())
                    .unwrap_or(false);
                let limit = if gossip_alive {
                    down_if_alive
                } else {
                    down_after
                };
                if node.state != NodeState::Down && last.elapsed() > limit {
                    let version = self.node(&node.id).map(|(_, v)| v);
                    let down = Node {
                        state: NodeState::Down,
                        updated_at: now_secs(),
                        ..node
                    };
                    if let Err(e) = self.put_node(&down, version).await {
                        tracing::debug!("marking {} down: {}", down.id, e.message());
                    } else {
                        tracing::info!("node {} ({}) is down", down.id, down.hostname);
                    }
                }
            }
        }
    }
}

impl Manager {
    /// Starts the manager parts on an opened Raft node: the API server on
    /// `listen`, the prober and the down detector.
    pub async fn start(
        raft: RaftNode,
        identity: Arc<RwLock<NodeIdentity>>,
        certs: Arc<RwLock<Certs>>,
        peers: Peers,
        listen: SocketAddr,
        gossip: super::GossipView,
    ) -> anyhow::Result<Manager> {
        let ctx = Arc::new(ManagerCtx {
            identity,
            certs,
            raft,
            peers: peers.clone(),
            reach: Reach::default(),
            seen: Mutex::default(),
            leader_since: Mutex::default(),
            reports: Mutex::default(),
            assignments: Mutex::default(),
            logs: logs::LogExchange::default(),
            gossip,
        });
        let stop = CancellationToken::new();
        let server_stop = stop.child_token();
        let server = services::serve(ctx.clone(), listen, server_stop.clone()).await?;
        let prober = {
            let list_ctx = ctx.clone();
            tokio::spawn(ctx.reach.clone().run(
                peers,
                ctx.me().api_addr(),
                move || list_ctx.manager_addrs(),
                stop.clone(),
            ))
        };
        let detector = tokio::spawn(ctx.clone().detect_down(stop.clone()));
        let orchestrator = tokio::spawn(ctx.clone().orchestrate(stop.clone()));
        Ok(Manager {
            ctx,
            listen,
            stop,
            server: (server, server_stop),
            tasks: vec![prober, detector, orchestrator],
            sealed_with: Arc::default(),
        })
    }

    /// Tells the agent whenever the swarm's unlock key differs from the one
    /// its keys are sealed with (`current` at first, then what
    /// [`Manager::sealed_with`] reports), so it re-seals them (autolock on,
    /// off, or a new key). Level-triggered: until the agent reports the
    /// re-seal done, the request is repeated every 5 s, so one that came
    /// while the agent was still starting is not lost.
    pub fn watch_autolock(&self, current: Option<String>, events: mpsc::Sender<SessionEvent>) {
        let (ctx, stop) = (self.ctx.clone(), self.stop.clone());
        *lock(&self.sealed_with) = current;
        let sealed_with = self.sealed_with.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut asked: Option<(Option<String>, Instant)> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Ok(cluster) = ctx.cluster() else { continue };
                let wanted = cluster.unlock_key;
                if wanted == *lock(&sealed_with) {
                    asked = None;
                    continue;
                }
                let recently = asked.as_ref().is_some_and(|(key, at)| {
                    *key == wanted && at.elapsed() < Duration::from_secs(5)
                });
                if recently {
                    continue;
                }
                asked = Some((wanted.clone(), Instant::now()));
                if events
                    .send(SessionEvent::AutolockChanged(wanted))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    /// The agent re-sealed its keys with `key` (`None`: stored plain).
    pub fn sealed_with(&self, key: Option<String>) {
        *lock(&self.sealed_with) = key;
    }

    /// Serves again with the current certificate, after a renewal.
    pub async fn restart_server(&mut self) -> anyhow::Result<()> {
        self.server.1.cancel();
        let old = std::mem::replace(&mut self.server.0, tokio::spawn(async {}));
        let _ = old.await;
        let token = self.stop.child_token();
        // The old listener may take a moment to release the port.
        let mut last = None;
        for _ in 0..20 {
            match services::serve(self.ctx.clone(), self.listen, token.clone()).await {
                Ok(handle) => {
                    self.server = (handle, token);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("manager API did not restart")))
    }

    /// Stops the server and background tasks, then the Raft node.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.0.await;
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.ctx.raft.shutdown().await {
            tracing::warn!("stopping the Raft node: {e}");
        }
    }
}

/// Opens (or creates) the Raft store in the state dir, sealed with `at_rest`.
pub async fn open_raft(
    state: &StateDir,
    id: &NodeIdentity,
    peers: &Peers,
    at_rest: Arc<dyn AtRest>,
) -> anyhow::Result<RaftNode> {
    let raft_id = id
        .raft_id
        .ok_or_else(|| anyhow::anyhow!("manager without a raft id"))?;
    let connector = Arc::new(services::Connector(peers.clone()));
    Ok(RaftNode::open(
        &state.raft_dir(),
        raft_id,
        &id.api_addr(),
        connector,
        at_rest,
    )
    .await?)
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
