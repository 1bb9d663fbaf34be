//! The `Ca` service's decisions: a node joins with a token and gets a
//! certificate for the role the token grants; a member renews its
//! certificate and gets the role the store holds for it now, so promotion
//! and demotion take effect.

use super::swarm::sign;
use super::{now_secs, Call, Caller, Link, Manager, ManagerError, Store};
use crate::api::{JoinRequest, JoinResponse, RenewRequest, RenewResponse};
use crate::ca::{ca_digest, JoinToken};
use crate::objects::{new_node_id, Named, Node, NodeState, Role};
use crate::store::{Command, Response};

impl<S: Store, L: Link> Manager<S, L> {
    /// `Ca.Join`: checks the token, signs the node's certificate with the
    /// role the token grants, and records the node. Needs no caller
    /// certificate (a joining node has none); the token is the credential.
    /// A follower relays the join to the leader.
    pub async fn join(&self, request: JoinRequest) -> Result<JoinResponse, ManagerError> {
        if !self.is_leader() {
            let leader = self.leader_addr().ok_or_else(|| self.quorum_error())?;
            return self.link.join(&leader, &request).await;
        }
        let cluster = self.cluster()?;
        let token: JoinToken = request.token.parse()?;
        let role = token.check(
            &ca_digest(&cluster.ca_cert_pem)?,
            &cluster.worker_secret,
            &cluster.manager_secret,
        )?;
        let node_id = new_node_id();
        let raft_id = (role == Role::Manager).then(|| rand::random::<u64>() >> 1);
        let cert_pem = sign(&cluster, &request.csr_pem, &node_id, role)?;
        let now = now_secs();
        let node = Node {
            id: node_id.clone(),
            hostname: request.hostname,
            addr: request.addr,
            listen_port: request.listen_port,
            role,
            availability: Default::default(),
            labels: Default::default(),
            state: NodeState::Ready,
            raft_id,
            resources: Default::default(),
            created_at: now,
            updated_at: now,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        };
        let put = Command::put(&node, Some(0)).map_err(ManagerError::store)?;
        if let Response::Conflict { .. } = self.submit(put).await? {
            return Err(ManagerError::Changed {
                kind: Node::WHAT,
                name: node_id,
            });
        }
        self.heard_from(&node_id);
        Ok(JoinResponse {
            node_id,
            cluster_id: cluster.id.clone(),
            role,
            cert_pem,
            ca_pem: cluster.ca_cert_pem,
            raft_id,
            managers: self.managers_leader_first(),
        })
    }

    /// `Ca.Renew`: a new certificate for the caller, with the role the
    /// store holds for it now. A removed node gets none.
    pub fn renew(
        &self,
        caller: &Caller,
        request: RenewRequest,
    ) -> Result<RenewResponse, ManagerError> {
        let objects = self.objects();
        self.authorize_here(caller, Call::Renew, &objects)?;
        let node_id = match caller {
            Caller::Node { node_id, .. } => node_id.as_str(),
            Caller::Local => self.me.node_id.as_str(),
        };
        let node = objects
            .one::<Node>(node_id)
            .map_err(ManagerError::store)?
            .ok_or_else(|| self.not_in_store(node_id))?
            .value;
        let cluster = self.cluster()?;
        let cert_pem = sign(&cluster, &request.csr_pem, &node.id, node.role)?;
        Ok(RenewResponse {
            cert_pem,
            role: node.role,
            raft_id: node.raft_id,
        })
    }
}
