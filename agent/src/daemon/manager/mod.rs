//! The manager role's wiring: the manager core (`shoal_control::manager`,
//! where every request is decided) on this node's Raft store, served on
//! port 2377 (`rpc`), reaching the other managers over mTLS (`link`), with
//! the reachability prober (`prober`), the down detector and the
//! orchestrator driver running as tasks of this role.
//!
//! Nothing is decided here: a request's answer is the core's.

mod link;
mod prober;
mod rpc;

use shoal_control::error_chain::ErrorChain;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shoal_control::manager::{GossipView, Manager, ManagerIdentity, Reach};
use shoal_control::raft::RaftNode;
use shoal_control::store::AtRest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::identity::{Certs, NodeIdentity, StateDir};
use super::peers::Peers;
use super::worker::SessionEvent;
pub use link::PeerLink;

/// The manager core as this daemon runs it.
pub type Core = Manager<RaftNode, PeerLink>;

/// How often the unlock key is compared with the one this node seals with.
const AUTOLOCK_CHECK: Duration = Duration::from_millis(500);

/// The API server and the token that stops it (it restarts with a renewed
/// certificate: tonic's TLS settings are fixed once serving).
struct Server {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

/// A running manager role; `stop` ends it.
pub struct ManagerRole {
    pub core: Arc<Core>,
    certs: Arc<RwLock<Certs>>,
    listen: SocketAddr,
    stop: CancellationToken,
    /// `None` only while it restarts.
    server: Option<Server>,
    tasks: TaskTracker,
    /// The unlock key this node's keys are sealed with, as the agent last
    /// reported (see [`ManagerRole::watch_autolock`]).
    sealed_with: Arc<Mutex<Option<String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ManagerRole {
    /// Starts the core on an opened Raft node, its API server on `listen`,
    /// the prober, the down detector and the orchestrator driver.
    pub async fn start(
        raft: RaftNode,
        me: ManagerIdentity,
        certs: Arc<RwLock<Certs>>,
        peers: Peers,
        listen: SocketAddr,
        gossip: GossipView,
    ) -> anyhow::Result<ManagerRole> {
        let own_addr = me.api_addr();
        let core = Arc::new(Manager::new(
            raft,
            PeerLink(peers.clone()),
            me,
            Reach::default(),
            gossip,
        ));
        let stop = CancellationToken::new();
        let server_stop = stop.child_token();
        let server = rpc::serve(core.clone(), &read(&certs), listen, server_stop.clone()).await?;
        let tasks = TaskTracker::new();
        let list = {
            let core = core.clone();
            move || core.manager_addrs()
        };
        tasks.spawn(prober::run(
            core.reach().clone(),
            peers,
            own_addr,
            list,
            stop.clone(),
        ));
        let (detector, orchestrator) = (core.clone(), core.clone());
        let (detector_stop, orchestrator_stop) = (stop.clone(), stop.clone());
        tasks.spawn(async move { detector.run_down_detector(detector_stop).await });
        tasks.spawn(async move { orchestrator.run_orchestrator(orchestrator_stop).await });
        Ok(ManagerRole {
            core,
            certs,
            listen,
            stop,
            server: Some(Server {
                task: server,
                stop: server_stop,
            }),
            tasks,
            sealed_with: Arc::default(),
        })
    }

    /// Tells the agent whenever the swarm's unlock key differs from the one
    /// its keys are sealed with (`current` at first, then what
    /// [`ManagerRole::sealed_with`] reports), so it re-seals them (autolock
    /// on, off, or a new key). Level-triggered: until the agent reports the
    /// re-seal done, the request is repeated every 5 s, so one that came
    /// while the agent was still starting is not lost.
    pub fn watch_autolock(&self, current: Option<String>, events: mpsc::Sender<SessionEvent>) {
        let (core, stop) = (self.core.clone(), self.stop.clone());
        *lock(&self.sealed_with) = current;
        let sealed_with = self.sealed_with.clone();
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(AUTOLOCK_CHECK);
            let mut asked: Option<(Option<String>, Instant)> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Ok(cluster) = core.cluster() else {
                    continue;
                };
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
        if let Some(old) = self.server.take() {
            old.stop.cancel();
            let _ = old.task.await;
        }
        let stop = self.stop.child_token();
        // The old listener may take a moment to release the port.
        let mut last = None;
        for _ in 0..20 {
            let certs = read(&self.certs);
            match rpc::serve(self.core.clone(), &certs, self.listen, stop.clone()).await {
                Ok(task) => {
                    self.server = Some(Server { task, stop });
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the manager API did not restart")))
    }

    /// Stops in order: the API server (calls in flight finish), the
    /// background tasks, then the Raft node.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(server) = self.server {
            let _ = server.task.await;
        }
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(e) = self.core.store().shutdown().await {
            tracing::warn!("stopping the Raft node: {}", e.chain());
        }
    }
}

/// This node as the manager core knows it.
pub fn manager_identity(id: &NodeIdentity) -> anyhow::Result<ManagerIdentity> {
    Ok(ManagerIdentity {
        node_id: id.node_id.clone(),
        cluster_id: id.cluster_id.clone(),
        addr: id.addr.clone(),
        listen_port: id.listen_port,
        raft_id: id
            .raft_id
            .ok_or_else(|| anyhow::anyhow!("manager without a raft id"))?,
    })
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
    let connector = Arc::new(Connector(peers.clone()));
    Ok(RaftNode::open(
        &state.raft_dir(),
        raft_id,
        &id.api_addr(),
        connector,
        at_rest,
    )
    .await?)
}

/// Gives the Raft transport mTLS endpoints to the other managers.
struct Connector(Peers);

impl shoal_control::raft::PeerConnector for Connector {
    fn endpoint(&self, addr: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        self.0.endpoint(addr)
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}
