//! The cluster API on a manager: reads from the local store, writes on the
//! leader (forwarded there when this manager is not it), joins, certificate
//! renewals and heartbeats.

use std::time::{Duration, Instant};

use shoal_control::api::{
    check_demote, check_remove, ApiRequest, ApiResponse, Heartbeat, HeartbeatResponse, JoinRequest,
    JoinResponse, NodeView, RenewRequest, RenewResponse, HEARTBEAT_PERIOD_MS,
};
use shoal_control::ca::{ca_digest, peer_identity, JoinToken, PeerIdentity, RootCa, UnlockKey};
use shoal_control::objects::{new_node_id, Cluster, NetworkRequest, Node, NodeState, Role};
use shoal_control::store::{Command, Response};
use tonic::Status;

use super::super::peers::{from_json, to_json};
use super::gossip::rotation_message;
use super::{now_secs, ManagerCtx};

/// How long a write may wait for a leader before failing with the quorum error.
const WRITE_WAIT: Duration = Duration::from_secs(3);

impl ManagerCtx {
    /// Answers `req` for a caller already authorized for it.
    pub async fn handle(&self, req: ApiRequest) -> Result<ApiResponse, Status> {
        if !req.needs_leader() {
            return self.read(req);
        }
        // The leader may have just died: wait a bounded time for a new one
        // before answering with the quorum error.
        let deadline = Instant::now() + WRITE_WAIT;
        loop {
            let retry = match self.require_leader() {
                Ok(None) => return self.on_leader(req).await,
                Ok(Some(leader)) => match self.peers.call(&leader, &req).await {
                    Err(s)
                        if s.code() == tonic::Code::Unavailable
                            && !s.message().starts_with("no quorum") =>
                    {
                        s
                    }
                    other => return other,
                },
                Err(s) => s,
            };
            if Instant::now() >= deadline {
                return Err(if retry.message().starts_with("no quorum") {
                    retry
                } else {
                    self.quorum_error()
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn read(&self, req: ApiRequest) -> Result<ApiResponse, Status> {
        match req {
            ApiRequest::Info => {
                let me = self.me();
                Ok(ApiResponse::Info(serde_json::json!({
                    "node_id": me.node_id, "cluster_id": me.cluster_id, "role": me.role,
                    "leader": self.leader_addr(), "managers": self.manager_addrs(),
                })))
            }
            ApiRequest::NodeList => {
                let views = self.nodes().iter().map(|n| self.view(n)).collect();
                Ok(ApiResponse::Nodes { nodes: views })
            }
            ApiRequest::NodeInspect { node } => {
                let node = self.find_node(&node)?;
                Ok(ApiResponse::Node {
                    node: Box::new(self.view(&node)),
                })
            }
            ApiRequest::NetworkList => self.list_networks(),
            ApiRequest::NetworkInspect { name_or_id } => self.inspect_network(&name_or_id),
            ApiRequest::ServiceList => self.list_services(),
            ApiRequest::ServiceInspect { service } => self.inspect_service(&service),
            ApiRequest::ServicePs { service } => self.service_ps(&service),
            ApiRequest::NodePs { node } => self.node_ps(&node),
            ApiRequest::UnlockKey => {
                let cluster = self.cluster()?;
                let key = cluster.unlock_key.ok_or_else(|| {
                    Status::failed_precondition("no unlock key is set: turn autolock on with `shoal swarm update --autolock=true`")
                })?;
                Ok(ApiResponse::Token {
                    token: key,
                    addr: self.me().api_addr(),
                })
            }
            ApiRequest::JoinToken { role, .. } => {
                let cluster = self.cluster()?;
                Ok(ApiResponse::Token {
                    token: token_for(&cluster, role)?,
                    addr: self.me().api_addr(),
                })
            }
            other => Err(Status::unimplemented(format!(
                "{other:?} is not supported yet"
            ))),
        }
    }

    /// What only the leader answers: writes, and `service logs`.
    async fn on_leader(&self, req: ApiRequest) -> Result<ApiResponse, Status> {
        match req {
            ApiRequest::ServiceLogs { query } => self.service_logs(query).await,
            write => self.write(write).await,
        }
    }

    async fn write(&self, req: ApiRequest) -> Result<ApiResponse, Status> {
        match req {
            ApiRequest::JoinToken { role, rotate: true } => {
                let mut cluster = self.cluster()?;
                let secret =
                    JoinToken::new_secret().map_err(|e| Status::internal(e.to_string()))?;
                match role {
                    Role::Worker => cluster.worker_secret = secret,
                    Role::Manager => cluster.manager_secret = secret,
                }
                self.put_cluster(&cluster).await?;
                Ok(ApiResponse::Token {
                    token: token_for(&cluster, role)?,
                    addr: self.me().api_addr(),
                })
            }
            ApiRequest::NodeUpdate {
                node,
                availability,
                label_add,
                label_rm,
            } => {
                let current = self.find_node(&node)?;
                let version = self.node(&current.id).map(|(_, v)| v);
                let mut updated = current.clone();
                if let Some(a) = availability {
                    updated.availability = a;
                }
                for key in &label_rm {
                    if updated.labels.remove(key).is_none() {
                        return Err(Status::invalid_argument(format!(
                            "key {key} doesn't exist in node's labels"
                        )));
                    }
                }
                updated.labels.extend(label_add);
                updated.updated_at = now_secs();
                self.put_node(&updated, version).await?;
                Ok(ApiResponse::Done {
                    message: updated.id,
                })
            }
            ApiRequest::NodeSetRole { node, role } => self.set_role(&node, role).await,
            ApiRequest::NodeRemove { node, force } => {
                let node = self.find_node(&node)?;
                check_remove(&node, &self.nodes(), force)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let version = self.node(&node.id).map(|(_, v)| v);
                self.submit(Command::Delete {
                    kind: "node".into(),
                    id: node.id.clone(),
                    expect_version: version,
                })
                .await?;
                Ok(ApiResponse::Done { message: node.id })
            }
            ApiRequest::SwarmUpdate {
                autolock,
                cert_expiry_secs,
                rotate_gossip_key,
            } => {
                let mut cluster = self.cluster()?;
                let before = cluster.clone();
                let mut message = "Swarm updated.".to_string();
                if let Some(secs) = cert_expiry_secs {
                    cluster.cert_expiry_secs = secs.max(1);
                }
                match autolock {
                    Some(true) if cluster.unlock_key.is_none() => {
                        let key = UnlockKey::generate()
                            .map_err(|e| Status::internal(e.to_string()))?
                            .to_string();
                        message.push_str(&crate::daemon::agent::unlock_instructions(&key));
                        cluster.unlock_key = Some(key);
                        cluster.autolock = true;
                    }
                    Some(false) => {
                        cluster.unlock_key = None;
                        cluster.autolock = false;
                    }
                    _ => {}
                }
                // One write for everything asked, so a rotation never
                // half-happens with the other settings.
                let mut commands = Vec::new();
                if cluster != before || !rotate_gossip_key {
                    commands.push(cluster_command(&cluster)?);
                }
                if rotate_gossip_key {
                    let (command, rotation) = self.gossip_rotation()?;
                    commands.push(command);
                    message.push('\n');
                    message.push_str(&rotation_message(&rotation));
                }
                self.submit_all(commands).await?;
                Ok(ApiResponse::Done { message })
            }
            ApiRequest::NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                mtu,
                labels,
            } => {
                self.create_network(NetworkRequest {
                    name,
                    driver,
                    subnet,
                    gateway,
                    mtu,
                    labels,
                    ingress: false,
                })
                .await
            }
            ApiRequest::NetworkRemove { name_or_id } => self.remove_network(&name_or_id).await,
            ApiRequest::ServiceCreate { spec } => self.create_service(*spec).await,
            ApiRequest::ServiceUpdate {
                service,
                spec,
                version,
                force,
            } => self.update_service(&service, *spec, version, force).await,
            ApiRequest::ServiceScale { service, replicas } => {
                self.scale_service(&service, replicas).await
            }
            ApiRequest::ServiceRollback { service } => self.rollback_service(&service).await,
            ApiRequest::ServiceRemove { service } => self.remove_service(&service).await,
            ApiRequest::SetStrategy { strategy } => self.set_strategy(strategy).await,
            ApiRequest::AddManager { node_id } => {
                let node = self.find_node(&node_id)?;
                let raft_id = node
                    .raft_id
                    .filter(|_| node.role == Role::Manager)
                    .ok_or_else(|| {
                        Status::failed_precondition(format!("node {node_id} is not a manager"))
                    })?;
                let addr = format!("{}:{}", node.addr, self.me().listen_port);
                self.raft
                    .add_voter(raft_id, &addr)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                Ok(ApiResponse::Done {
                    message: format!("node {node_id} joined the managers"),
                })
            }
            other => Err(Status::unimplemented(format!(
                "{other:?} is not supported yet"
            ))),
        }
    }

    async fn set_role(&self, name: &str, role: Role) -> Result<ApiResponse, Status> {
        let node = self.find_node(name)?;
        if node.role == role {
            let what = if role == Role::Manager {
                "already a manager"
            } else {
                "already a worker"
            };
            return Ok(ApiResponse::Done {
                message: format!("Node {} is {what}.", node.id),
            });
        }
        let version = self.node(&node.id).map(|(_, v)| v);
        let mut updated = node.clone();
        updated.role = role;
        updated.updated_at = now_secs();
        if role == Role::Manager {
            updated.raft_id = Some(rand::random::<u64>() >> 1);
        } else {
            let reachable = self
                .reach
                .count(&self.manager_addrs(), &self.me().api_addr());
            check_demote(&node, &self.nodes(), reachable)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            if let Some(raft_id) = node.raft_id {
                self.raft
                    .remove_voter(raft_id)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
            updated.raft_id = None;
        }
        self.put_node(&updated, version).await?;
        let verb = if role == Role::Manager {
            "promoted to a manager"
        } else {
            "demoted in the swarm"
        };
        Ok(ApiResponse::Done {
            message: format!("Node {} {verb}.", node.id),
        })
    }

    async fn put_cluster(&self, cluster: &Cluster) -> Result<(), Status> {
        match self.submit(cluster_command(cluster)?).await? {
            Response::Conflict { .. } => Err(Status::aborted(
                "the cluster object changed concurrently; retry",
            )),
            _ => Ok(()),
        }
    }

    /// `self`, a full id, a unique id prefix, or a hostname.
    pub(super) fn find_node(&self, name: &str) -> Result<Node, Status> {
        let nodes = self.nodes();
        let me = self.me();
        let wanted = if name == "self" {
            me.node_id.as_str()
        } else {
            name
        };
        if let Some(n) = nodes.iter().find(|n| n.id == wanted) {
            return Ok(n.clone());
        }
        let matches: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.id.starts_with(wanted) || n.hostname == wanted)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Status::not_found(format!("node {name} not found"))),
            _ => Err(Status::invalid_argument(format!(
                "node {name} is ambiguous ({} matches)",
                matches.len()
            ))),
        }
    }

    fn view(&self, node: &Node) -> NodeView {
        let me = self.me();
        let manager = (node.role == Role::Manager).then(|| {
            let addr = format!("{}:{}", node.addr, me.listen_port);
            let leader = self.leader_addr().is_some_and(|l| l == addr);
            (leader, self.reach.of(&addr, &me.api_addr()))
        });
        NodeView::new(node, manager)
    }

    /// `Ca.Join`: checks the token, signs the node's certificate with the role
    /// the token grants, and records the node.
    pub async fn join(&self, json: &str) -> Result<String, Status> {
        let req: JoinRequest = from_json(json)?;
        if let Some(leader) = self.require_leader()? {
            return self.peers.ca_join(&leader, json.to_string()).await;
        }
        let cluster = self.cluster()?;
        let token: JoinToken = req
            .token
            .parse()
            .map_err(|e: shoal_control::ca::CaError| Status::invalid_argument(e.to_string()))?;
        let digest =
            ca_digest(&cluster.ca_cert_pem).map_err(|e| Status::internal(e.to_string()))?;
        let role = token
            .check(&digest, &cluster.worker_secret, &cluster.manager_secret)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let node_id = new_node_id(rand::random());
        let raft_id = (role == Role::Manager).then(|| rand::random::<u64>() >> 1);
        let cert_pem = sign(&cluster, &req.csr_pem, &node_id, role)?;
        let now = now_secs();
        let node = Node {
            id: node_id.clone(),
            hostname: req.hostname,
            addr: req.addr,
            role,
            availability: Default::default(),
            labels: Default::default(),
            state: NodeState::Ready,
            raft_id,
            resources: Default::default(),
            created_at: now,
            updated_at: now,
        };
        self.put_node(&node, Some(0)).await?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(node_id.clone(), Instant::now());
        }
        let managers = self.managers_leader_first();
        to_json(&JoinResponse {
            node_id,
            cluster_id: cluster.id,
            role,
            cert_pem,
            ca_pem: cluster.ca_cert_pem,
            raft_id,
            managers,
        })
    }

    /// `Ca.Renew`: a new certificate for the caller, with the role the store
    /// holds for it now (so promotion and demotion take effect).
    pub fn renew(&self, caller: &PeerIdentity, json: &str) -> Result<String, Status> {
        let req: RenewRequest = from_json(json)?;
        let (node, _) = self.node(&caller.node_id).ok_or_else(|| {
            Status::permission_denied(format!(
                "node {} was removed from the swarm",
                caller.node_id
            ))
        })?;
        let cluster = self.cluster()?;
        let cert_pem = sign(&cluster, &req.csr_pem, &node.id, node.role)?;
        to_json(&RenewResponse {
            cert_pem,
            role: node.role,
            raft_id: node.raft_id,
        })
    }

    /// `Dispatcher.Heartbeat`: records the node as alive (on the leader,
    /// marking it Ready) and tells it its role, the managers, the gossip
    /// keys and peers, and every overlay network. Log answers go to the
    /// leader's broker, and its fetches for the node come back.
    pub async fn heartbeat(&self, caller: &PeerIdentity, json: &str) -> Result<String, Status> {
        let hb: Heartbeat = from_json(json)?;
        if hb.node_id != caller.node_id {
            return Err(Status::permission_denied(
                "a node may only heartbeat for itself",
            ));
        }
        let (node, _) = self.node(&hb.node_id).ok_or_else(|| {
            Status::permission_denied(format!("node {} was removed from the swarm", hb.node_id))
        })?;
        let mut log_fetches = Vec::new();
        if self.is_leader() {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(hb.node_id.clone(), Instant::now());
            }
            self.take_reports(&hb.node_id, hb.tasks);
            self.logs.deliver(&hb.node_id, hb.logs);
            log_fetches = self.logs.fetches_for(&hb.node_id);
            let resources = hb.resources.unwrap_or(node.resources);
            if node.state != NodeState::Ready || node.resources != resources {
                let version = self.node(&node.id).map(|(_, v)| v);
                let ready = Node {
                    state: NodeState::Ready,
                    resources,
                    updated_at: now_secs(),
                    ..node.clone()
                };
                self.put_node(&ready, version).await?;
            }
        } else if let Some(leader) = self.leader_addr() {
            // The leader keeps the heartbeat table and the log broker;
            // relay, briefly, and pass its log fetches on.
            let relay = self.peers.heartbeat(&leader, json.to_string());
            let reply =
                tokio::time::timeout(Duration::from_millis(HEARTBEAT_PERIOD_MS), relay).await;
            if let Ok(Ok(reply)) = reply {
                if let Ok(resp) = from_json::<HeartbeatResponse>(&reply) {
                    log_fetches = resp.log_fetches;
                }
            }
        }
        let managers = self.managers_leader_first();
        let (assignments, history) = self.assignments_for(&node.id).unzip();
        to_json(&HeartbeatResponse {
            role: node.role,
            managers,
            period_ms: HEARTBEAT_PERIOD_MS,
            gossip: self.gossip_config(&node),
            networks: self.network_specs(),
            assignments,
            history,
            log_fetches,
        })
    }
}

/// The write that stores the cluster object.
fn cluster_command(cluster: &Cluster) -> Result<Command, Status> {
    Command::set("cluster", "cluster", cluster, None).map_err(|e| Status::internal(e.to_string()))
}

fn token_for(cluster: &Cluster, role: Role) -> Result<String, Status> {
    let digest = ca_digest(&cluster.ca_cert_pem).map_err(|e| Status::internal(e.to_string()))?;
    let secret = match role {
        Role::Worker => cluster.worker_secret.clone(),
        Role::Manager => cluster.manager_secret.clone(),
    };
    Ok(JoinToken { digest, secret }.to_string())
}

fn sign(cluster: &Cluster, csr_pem: &str, node_id: &str, role: Role) -> Result<String, Status> {
    let ca = RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem)
        .map_err(|e| Status::internal(e.to_string()))?;
    ca.sign(
        csr_pem,
        node_id,
        role,
        &cluster.id,
        Duration::from_secs(cluster.cert_expiry_secs),
    )
    .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Parses the caller's identity from the TLS layer's certificate chain.
pub fn identity_of(cert_der: &[u8]) -> Result<PeerIdentity, Status> {
    peer_identity(cert_der).map_err(|e| Status::unauthenticated(e.to_string()))
}
