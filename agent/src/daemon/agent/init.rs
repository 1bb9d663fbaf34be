//! `swarm init`: a new swarm with this node as its only manager (a new
//! root CA, join secrets and gossip key), and `swarm init
//! --force-new-cluster`: this manager's state kept, every other manager
//! dropped from the Raft group.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_control::ca::{self, JoinToken, NodeKey, RootCa, UnlockKey};
use shoal_control::manager::{now_secs, unlock_instructions};
use shoal_control::objects::{new_cluster_id, new_node_id, Cluster, Node, NodeState, Role};

use super::super::at_rest::DekSealer;
use super::super::identity::{Certs, NodeIdentity};
use super::{AgentError, Membership};

impl Membership {
    pub(super) async fn init(
        &mut self,
        advertise_addr: &str,
        listen_port: u16,
        cert_expiry_secs: u64,
        autolock: bool,
    ) -> Result<String, AgentError> {
        if self.member.is_some() || self.locked.is_some() {
            return Err(AgentError::AlreadyMember);
        }
        let addr: IpAddr = advertise_addr
            .parse()
            .map_err(|_| AgentError::BadAdvertiseAddr(advertise_addr.to_string()))?;
        let cluster_id = new_cluster_id();
        let node_id = new_node_id();
        let root = RootCa::generate(&cluster_id)?;
        let NodeKey { key_pem, csr_pem } = NodeKey::generate()?;
        let expiry = Duration::from_secs(cert_expiry_secs);
        let cert_pem = root.sign(&csr_pem, &node_id, Role::Manager, &cluster_id, expiry)?;
        let identity = NodeIdentity {
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            role: Role::Manager,
            hostname: self.hostname.clone(),
            addr: addr.to_string(),
            listen_port,
            raft_id: Some(rand::random::<u64>() >> 1),
            managers: vec![format!("{addr}:{listen_port}")],
            autolock: false,
        };
        let certs = Certs {
            ca_pem: root.cert_pem().to_string(),
            cert_pem,
            key_pem,
        };
        let kek = if autolock {
            Some(UnlockKey::generate()?)
        } else {
            None
        };
        self.state
            .save_certs(&certs, kek.as_ref())
            .map_err(anyhow::Error::from)?;
        self.state
            .save_identity(&identity)
            .map_err(anyhow::Error::from)?;
        let now = now_secs();
        let cluster = Cluster {
            id: cluster_id,
            ca_cert_pem: root.cert_pem().to_string(),
            ca_key_pem: root.key_pem().to_string(),
            worker_secret: JoinToken::new_secret()?,
            manager_secret: JoinToken::new_secret()?,
            cert_expiry_secs,
            autolock,
            unlock_key: kek.as_ref().map(|k| k.to_string()),
            gossip_key: rand::random::<[u8; 32]>().to_vec(),
            strategy: Default::default(),
            max_replicas: shoal_control::objects::DEFAULT_MAX_REPLICAS,
            task_history_limit: shoal_control::objects::DEFAULT_TASK_HISTORY_LIMIT,
            ingress_removed: false,
            created_at: now,
        };
        let node = Node {
            id: node_id.clone(),
            hostname: self.hostname.clone(),
            addr: addr.to_string(),
            listen_port,
            role: Role::Manager,
            availability: Default::default(),
            labels: Default::default(),
            state: NodeState::Ready,
            raft_id: identity.raft_id,
            resources: Default::default(),
            created_at: now,
            updated_at: now,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        };
        let token = JoinToken {
            digest: ca::ca_digest(&cluster.ca_cert_pem)?,
            secret: cluster.worker_secret.clone(),
        };
        self.become_member(identity.clone(), certs, Some((cluster, node)), kek.clone())
            .await?;
        Ok(format!(
            "Swarm initialized: current node ({node_id}) is now a manager.\n\n\
             To add a worker to this swarm, run the following command:\n\n    \
             shoal swarm join --token {token} {}\n\n\
             To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n{}",
            identity.api_addr(),
            kek.map(|k| unlock_instructions(&k.to_string()))
                .unwrap_or_default(),
        ))
    }

    /// `swarm init --force-new-cluster`.
    pub(super) async fn force_new_cluster(&mut self) -> Result<String, AgentError> {
        let identity = self
            .state
            .load_identity()
            .map_err(anyhow::Error::from)?
            .filter(|i| i.role == Role::Manager)
            .ok_or(AgentError::NoManagerState)?;
        let kek = self.member.as_ref().and_then(|m| m.kek.clone());
        self.stop_member(false).await;
        let dek = self.state.data_key(kek.as_ref())?;
        let raft_id = identity.raft_id.ok_or(AgentError::NoManagerState)?;
        shoal_control::store::force_new_cluster(
            &self.state.raft_dir(),
            raft_id,
            &identity.api_addr(),
            Arc::new(DekSealer(dek)),
        )
        .map_err(anyhow::Error::from)?;
        let identity = NodeIdentity {
            managers: vec![identity.api_addr()],
            ..identity
        };
        self.state
            .save_identity(&identity)
            .map_err(anyhow::Error::from)?;
        let certs = self.state.load_certs(kek.as_ref())?;
        self.become_member(identity.clone(), certs, None, kek)
            .await?;
        Ok(format!(
            "Swarm re-initialized: current node ({}) is now the only manager; the state is kept.",
            identity.node_id
        ))
    }
}
