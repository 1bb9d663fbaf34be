//! A manager's first steps: open the Raft store and start the manager role;
//! then either record the new swarm (`swarm init`: the cluster object and
//! this node) or, for a new manager of an existing swarm, ask the leader to
//! add it to the Raft group.

use shoal_control::error_chain::ErrorChain;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shoal_control::api::ApiRequest;
use shoal_control::ca::UnlockKey;
use shoal_control::objects::{Cluster, Node};
use shoal_control::store::Command;

use super::super::at_rest::DekSealer;
use super::super::identity::{Certs, NodeIdentity};
use super::super::manager::{manager_identity, open_raft, ManagerRole};
use super::super::peers::Peers;
use super::member::read;
use super::Membership;

/// How long a new swarm waits for its single manager to lead.
const LEADERSHIP_WAIT: Duration = Duration::from_secs(10);
/// How many times a new manager asks to join the Raft group.
const ADD_ATTEMPTS: usize = 20;

impl Membership {
    pub(super) async fn start_manager(
        &self,
        identity: &Arc<RwLock<NodeIdentity>>,
        certs: &Arc<RwLock<Certs>>,
        peers: &Peers,
        bootstrap: Option<(Cluster, Node)>,
        kek: Option<&UnlockKey>,
    ) -> anyhow::Result<ManagerRole> {
        let id = read(identity);
        let fresh = !self.state.raft_dir().exists();
        let dek = self.state.data_key(kek)?;
        let raft = open_raft(&self.state, &id, peers, Arc::new(DekSealer(dek))).await?;
        if bootstrap.is_some() {
            raft.initialize().await?;
        }
        let listen = SocketAddr::new("0.0.0.0".parse()?, id.listen_port);
        let role = ManagerRole::start(
            raft,
            manager_identity(&id)?,
            certs.clone(),
            peers.clone(),
            listen,
            self.gossip_view.clone(),
        )
        .await?;
        role.watch_autolock(kek.map(|k| k.to_string()), self.events.clone());
        let ready = match bootstrap {
            Some((cluster, node)) => self.record_swarm(&role, cluster, node).await,
            None if fresh => self.join_raft_group(&id, peers).await,
            None => Ok(()),
        };
        if let Err(e) = ready {
            role.stop().await;
            return Err(e);
        }
        Ok(role)
    }

    /// Writes the new swarm's first objects once this manager leads.
    async fn record_swarm(
        &self,
        role: &ManagerRole,
        cluster: Cluster,
        node: Node,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + LEADERSHIP_WAIT;
        let cmd = Command::Batch(vec![
            Command::put(&cluster, None)?,
            Command::put(&node, None)?,
        ]);
        loop {
            match role
                .core
                .store()
                .write_within(cmd.clone(), Duration::from_secs(3))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline && !self.stop.is_cancelled() => {
                    tracing::debug!("waiting for leadership: {}", e.chain());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => anyhow::bail!("could not record the new swarm: {}", e.chain()),
            }
        }
    }

    /// A new manager: asks the leader (through the managers it knows) to
    /// add it to the Raft group.
    async fn join_raft_group(&self, id: &NodeIdentity, peers: &Peers) -> anyhow::Result<()> {
        let request = ApiRequest::AddManager {
            node_id: id.node_id.clone(),
        };
        let mut last = None;
        for attempt in 0..ADD_ATTEMPTS {
            let Some(target) = id.managers.get(attempt % id.managers.len().max(1)) else {
                anyhow::bail!("this node knows no manager to ask");
            };
            match peers.call(target, &request).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::select! {
                _ = self.stop.cancelled() => anyhow::bail!("the agent is shutting down"),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        anyhow::bail!(
            "the leader did not add this node to the managers: {}",
            last.map(|e| e.message().to_string()).unwrap_or_default()
        )
    }
}
