//! The parts a swarm member runs, started by [`Membership::become_member`]
//! and stopped in order: the certificate renewal timer, gossip and the
//! overlay with the task runner (the plane), the session with the managers,
//! and on managers the manager role (its API server, its loops, Raft).

use std::sync::{Arc, RwLock};

use shoal_control::ca::UnlockKey;
use shoal_control::objects::{Cluster, Node, Role};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::dataplane::load_networks;
use super::super::identity::{Certs, NodeIdentity, StateDir};
use super::super::manager::ManagerRole;
use super::super::peers::Peers;
use super::super::plane::{Plane, TaskInputs};
use super::super::worker::{Handouts, LogLink, Reports, Session};
use super::Membership;

pub(super) struct Member {
    pub identity: Arc<RwLock<NodeIdentity>>,
    pub certs: Arc<RwLock<Certs>>,
    pub peers: Peers,
    pub session: Session,
    pub manager: Option<ManagerRole>,
    /// Cancels the pending renewal timer.
    pub renewal: CancellationToken,
    /// The unlock key, while autolock is on (managers only).
    pub kek: Option<UnlockKey>,
    /// Gossip and the overlay; `Err` says why they could not start.
    pub plane: Result<Arc<Plane>, String>,
}

impl Member {
    /// Stops every part; `leaving` also tears the overlay down and stops
    /// the tasks.
    pub async fn stop(self, leaving: bool) {
        self.renewal.cancel();
        if let Ok(plane) = &self.plane {
            plane.stop(leaving).await;
        }
        self.session.stop().await;
        if let Some(m) = self.manager {
            m.stop().await;
        }
    }

    /// Stops every part for a restart of the agent (its tasks keep
    /// running): the managers are told first that the node comes back
    /// within `window`, so they keep its tasks meanwhile.
    pub async fn stop_for_restart(self, window: std::time::Duration) {
        self.renewal.cancel();
        self.session.stop_for_restart(window).await;
        if let Ok(plane) = &self.plane {
            plane.stop(false).await;
        }
        if let Some(m) = self.manager {
            m.stop().await;
        }
    }

    /// Changes this node's identity in memory and in the state dir.
    pub fn update_identity(
        &self,
        state: &StateDir,
        change: impl FnOnce(&mut NodeIdentity),
    ) -> anyhow::Result<NodeIdentity> {
        let updated = {
            let mut id = self
                .identity
                .write()
                .map_err(|_| anyhow::anyhow!("identity lock poisoned"))?;
            change(&mut id);
            id.clone()
        };
        state.save_identity(&updated)?;
        Ok(updated)
    }
}

impl Membership {
    /// Starts the parts of `identity`'s role and publishes the new standing.
    /// `bootstrap` is the first cluster and node objects when this node
    /// creates the swarm.
    pub(super) async fn become_member(
        &mut self,
        identity: NodeIdentity,
        certs: Certs,
        bootstrap: Option<(Cluster, Node)>,
        kek: Option<UnlockKey>,
    ) -> anyhow::Result<()> {
        let identity = Arc::new(RwLock::new(identity));
        let certs = Arc::new(RwLock::new(certs));
        let peers = Peers::new(certs.clone());
        let manager = match read(&identity).role {
            Role::Manager => Some(
                self.start_manager(&identity, &certs, &peers, bootstrap, kek.as_ref())
                    .await?,
            ),
            Role::Worker => None,
        };
        let handouts = Handouts::new(load_networks(&self.state.networks_file()));
        let (reports_tx, reports_rx) = tokio::sync::watch::channel(Vec::new());
        // A few batches each way: the session sends one per heartbeat.
        let (fetches_tx, fetches_rx) = mpsc::channel(4);
        let (chunks_tx, chunks_rx) = mpsc::channel(4);
        let plane = Plane::start(
            &read(&identity),
            &read(&certs),
            &self.state,
            &self.run_dir,
            handouts.gossip.subscribe(),
            handouts.networks.subscribe(),
            TaskInputs {
                assignments: handouts.assignments.subscribe(),
                history: handouts.history.subscribe(),
                reports: reports_tx,
                cgroup_root: self.cgroup_root.clone(),
                registries: self.registries.clone(),
                mesh: self.mesh,
                gossip_view: self.gossip_view.clone(),
                log_fetches: fetches_rx,
                log_chunks: chunks_tx,
                log_limit: self.task_log_limit,
            },
        )
        .await
        .map(Arc::new)
        .map_err(|e| {
            tracing::error!("gossip and the overlay did not start: {e:#}");
            format!("{e:#}")
        });
        let session = Session::start(
            identity.clone(),
            peers.clone(),
            self.events.clone(),
            handouts,
            Reports {
                resources: self.resources,
                tasks: reports_rx,
                latency: self.latency.clone(),
            },
            LogLink {
                fetches: fetches_tx,
                chunks: chunks_rx,
            },
        );
        let renewal = self.schedule_renewal(&read(&certs).cert_pem);
        {
            let me = read(&identity);
            tracing::info!(
                target: "shoal::lifecycle",
                "node {} ({}) is a {} of swarm {}: address {}{}, managers {}",
                me.node_id,
                me.hostname,
                me.role,
                me.cluster_id,
                me.addr,
                match me.role {
                    Role::Manager => format!(", manager API on port {}", me.listen_port),
                    Role::Worker => String::new(),
                },
                me.managers.join(", ")
            );
        }
        self.member = Some(Member {
            identity,
            certs,
            peers,
            session,
            manager,
            renewal,
            kek,
            plane,
        });
        self.locked = None;
        self.publish();
        Ok(())
    }

    /// Stops the member's parts (and, `leaving`, its overlay and tasks)
    /// after telling the request paths it is gone.
    pub(super) async fn stop_member(&mut self, leaving: bool) {
        if let Some(member) = self.member.take() {
            self.publish();
            member.stop(leaving).await;
        }
    }
}

pub(super) fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}
