//! The agent's membership: not in a swarm, or a member running the worker
//! session and, for managers, the manager parts. Init, join, leave, resume at
//! start, and reconfiguration when the managers change this node's role.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shoal_control::api::{
    ApiRequest, ApiResponse, JoinRequest, JoinResponse, LocalRequest, RenewRequest, RenewResponse,
};
use shoal_control::ca::{self, JoinToken, NodeKey, RootCa, UnlockKey};
use shoal_control::objects::{
    new_node_id, Cluster, Node, NodeState, Role, DEFAULT_CERT_EXPIRY_SECS,
};
use shoal_control::proto::control::ca_client::CaClient;
use shoal_control::proto::control::Json;
use shoal_control::store::Command;
use tokio::sync::{mpsc, Mutex};
use tonic::Status;

use super::at_rest::{DekSealer, SecretError};
use super::identity::{Certs, NodeIdentity, StateDir};
use super::manager::{self, now_secs, Manager};
use super::peers::{from_json, to_json, Peers};
use super::plane::{Plane, TaskInputs};
use super::worker::{Handouts, LogLink, Reports, Session, SessionEvent};
use super::Options;

const NOT_IN_SWARM: &str = "This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to a swarm and try again.";
const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

struct Member {
    identity: Arc<RwLock<NodeIdentity>>,
    certs: Arc<RwLock<Certs>>,
    peers: Peers,
    session: Session,
    manager: Option<Manager>,
    renewal: tokio::task::JoinHandle<()>,
    /// The unlock key, while autolock is on (managers only).
    kek: Option<UnlockKey>,
    /// Gossip and the overlay; `Err` says why they could not start.
    plane: Result<Plane, String>,
}

impl Member {
    /// Stops every part; `leaving` also tears the overlay down.
    async fn stop(self, leaving: bool) {
        self.renewal.abort();
        if let Ok(plane) = &self.plane {
            plane.stop(leaving).await;
        }
        self.session.stop().await;
        if let Some(m) = self.manager {
            m.stop().await;
        }
    }

    fn plane(&self) -> Result<&Plane, Status> {
        self.plane
            .as_ref()
            .map_err(|e| Status::unavailable(format!("gossip is not running on this node: {e}")))
    }
}

/// Sends `RenewDue` at a random point in 50-80% of the certificate's life
/// (Swarm's rule), so a fleet never renews all at once.
fn schedule_renewal(
    cert_pem: &str,
    events: mpsc::Sender<SessionEvent>,
) -> tokio::task::JoinHandle<()> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let wait = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .ok()
        .and_then(|der| ca::peer_identity(der.as_ref()).ok())
        .map(|id| {
            ca::time_until_renewal(
                id.not_before,
                id.not_after,
                std::time::SystemTime::now(),
                rand::random(),
            )
        });
    tokio::spawn(async move {
        let Some(wait) = wait else {
            tracing::error!("cannot read this node's certificate dates; it will not be renewed");
            return;
        };
        tokio::time::sleep(wait).await;
        let _ = events.send(SessionEvent::RenewDue).await;
    })
}

pub struct Agent {
    state: StateDir,
    run_dir: std::path::PathBuf,
    hostname: String,
    member: Mutex<Option<Member>>,
    /// Set while an autolocked manager waits for `swarm unlock`.
    locked: Mutex<Option<NodeIdentity>>,
    events: mpsc::Sender<SessionEvent>,
    events_rx: Mutex<Option<mpsc::Receiver<SessionEvent>>>,
    cgroup_root: std::path::PathBuf,
    resources: shoal_control::objects::NodeResources,
    mesh: crate::balancer::MeshConfig,
    gossip_view: super::GossipView,
}

fn status(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl Agent {
    pub fn new(opts: &Options) -> anyhow::Result<Agent> {
        let (tx, rx) = mpsc::channel(16);
        let hostname = match &opts.hostname {
            Some(h) => h.clone(),
            None => hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into()),
        };
        Ok(Agent {
            state: StateDir::new(&opts.state_dir),
            run_dir: opts.run_dir.clone(),
            hostname,
            member: Mutex::new(None),
            locked: Mutex::new(None),
            events: tx,
            events_rx: Mutex::new(Some(rx)),
            cgroup_root: opts.cgroup_root.clone(),
            resources: opts.resources,
            mesh: opts.mesh,
            gossip_view: super::GossipView::default(),
        })
    }

    /// Rejoins the swarm recorded in the state dir, if any, and starts
    /// reacting to session events.
    pub async fn resume(self: Arc<Self>) -> anyhow::Result<()> {
        if let Some(rx) = self.events_rx.lock().await.take() {
            tokio::spawn(self.clone().react(rx));
        }
        let Some(identity) = self.state.load_identity()? else {
            return Ok(());
        };
        if self.state.is_locked() {
            tracing::warn!(
                "this manager is autolocked: it serves nothing until `shoal swarm unlock`"
            );
            *self.locked.lock().await = Some(identity);
            return Ok(());
        }
        let certs = self.state.load_certs(None)?;
        self.become_member(identity, certs, None, None).await?;
        Ok(())
    }

    pub async fn shutdown(&self) {
        if let Some(member) = self.member.lock().await.take() {
            member.stop(false).await;
        }
    }

    pub async fn handle_local(self: Arc<Self>, req: LocalRequest) -> Result<ApiResponse, Status> {
        match req {
            LocalRequest::Init {
                advertise_addr,
                listen_port,
                force_new_cluster,
                autolock,
                cert_expiry_secs,
            } => {
                if force_new_cluster {
                    return self.force_new_cluster().await;
                }
                let expiry = cert_expiry_secs.unwrap_or(DEFAULT_CERT_EXPIRY_SECS);
                self.init(advertise_addr, listen_port, expiry, autolock)
                    .await
            }
            LocalRequest::Join {
                token,
                manager,
                advertise_addr,
                listen_port,
            } => {
                self.join(&token, &manager, advertise_addr, listen_port)
                    .await
            }
            LocalRequest::Leave { force } => self.leave(force).await,
            LocalRequest::Unlock { key } => self.unlock(&key).await,
            LocalRequest::Api(req) => self.api(req).await,
            LocalRequest::Members => self.on_plane(async |p| p.members().await).await,
            LocalRequest::EndpointCreate {
                id,
                network,
                ip,
                service,
                publish,
            } => {
                self.on_plane(async |p| {
                    p.endpoint_create(&id, &network, ip, &service, &publish)
                        .await
                })
                .await
            }
            LocalRequest::EndpointRemove { id } => {
                self.on_plane(async |p| p.endpoint_remove(&id).await).await
            }
            LocalRequest::EndpointList => self.on_plane(async |p| p.endpoint_list().await).await,
        }
    }

    /// The metrics page: the data plane's report, or a comment saying why
    /// there is none.
    pub async fn metrics(&self) -> String {
        let report = self.on_plane(async |p| p.report().await).await;
        match report {
            Ok(report) => report.prometheus(),
            Err(status) => format!("# {}\n", status.message()),
        }
    }

    /// Runs a local verb of the data plane (gossip, overlay).
    async fn on_plane<T>(
        &self,
        verb: impl AsyncFnOnce(&Plane) -> anyhow::Result<T>,
    ) -> Result<T, Status> {
        let guard = self.member.lock().await;
        let member = guard
            .as_ref()
            .ok_or_else(|| Status::failed_precondition(NOT_IN_SWARM))?;
        verb(member.plane()?)
            .await
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))
    }

    async fn unlock(&self, key: &str) -> Result<ApiResponse, Status> {
        let mut locked = self.locked.lock().await;
        let Some(identity) = locked.clone() else {
            return Err(Status::failed_precondition("Error: swarm is not locked"));
        };
        let kek: UnlockKey = key
            .parse()
            .map_err(|e: ca::CaError| Status::invalid_argument(e.to_string()))?;
        let certs = self
            .state
            .load_certs(Some(&kek))
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        self.become_member(identity, certs, None, Some(kek))
            .await
            .map_err(status)?;
        *locked = None;
        Ok(ApiResponse::Done {
            message: "Swarm unlocked.".into(),
        })
    }

    async fn api(&self, req: ApiRequest) -> Result<ApiResponse, Status> {
        if self.locked.lock().await.is_some() {
            return Err(Status::failed_precondition(SecretError::Locked.to_string()));
        }
        let guard = self.member.lock().await;
        let member = guard
            .as_ref()
            .ok_or_else(|| Status::failed_precondition(NOT_IN_SWARM))?;
        match &member.manager {
            Some(m) => {
                let ctx = m.ctx.clone();
                drop(guard);
                ctx.handle(req).await
            }
            None => Err(Status::failed_precondition(NOT_A_MANAGER)),
        }
    }

    async fn init(
        &self,
        advertise_addr: String,
        listen_port: u16,
        expiry: u64,
        autolock: bool,
    ) -> Result<ApiResponse, Status> {
        if self.member.lock().await.is_some() {
            return Err(Status::already_exists(
                "This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.",
            ));
        }
        let addr: IpAddr = advertise_addr.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "advertise address must be an IP address, got `{advertise_addr}`"
            ))
        })?;
        let cluster_id = new_node_id(rand::random());
        let node_id = new_node_id(rand::random());
        let root = RootCa::generate(&cluster_id).map_err(status)?;
        let NodeKey { key_pem, csr_pem } = NodeKey::generate().map_err(status)?;
        let cert_pem = root
            .sign(
                &csr_pem,
                &node_id,
                Role::Manager,
                &cluster_id,
                Duration::from_secs(expiry),
            )
            .map_err(status)?;
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
            Some(UnlockKey::generate().map_err(status)?)
        } else {
            None
        };
        self.state
            .save_certs(&certs, kek.as_ref())
            .map_err(status)?;
        self.state.save_identity(&identity).map_err(status)?;
        let now = now_secs();
        let cluster = Cluster {
            id: cluster_id,
            ca_cert_pem: root.cert_pem().to_string(),
            ca_key_pem: root.key_pem().to_string(),
            worker_secret: JoinToken::new_secret().map_err(status)?,
            manager_secret: JoinToken::new_secret().map_err(status)?,
            cert_expiry_secs: expiry,
            autolock,
            unlock_key: kek.as_ref().map(|k| k.to_string()),
            gossip_key: rand::random::<[u8; 32]>().to_vec(),
            strategy: Default::default(),
            created_at: now,
        };
        let node = Node {
            id: node_id.clone(),
            hostname: self.hostname.clone(),
            addr: addr.to_string(),
            role: Role::Manager,
            availability: Default::default(),
            labels: Default::default(),
            state: NodeState::Ready,
            raft_id: identity.raft_id,
            resources: Default::default(),
            created_at: now,
            updated_at: now,
        };
        self.become_member(
            identity.clone(),
            certs,
            Some((cluster.clone(), node)),
            kek.clone(),
        )
        .await
        .map_err(status)?;
        let token = JoinToken {
            digest: ca::ca_digest(&cluster.ca_cert_pem).map_err(status)?,
            secret: cluster.worker_secret,
        };
        Ok(ApiResponse::Done {
            message: format!(
                "Swarm initialized: current node ({node_id}) is now a manager.\n\n\
                 To add a worker to this swarm, run the following command:\n\n    \
                 shoal swarm join --token {token} {}\n\n\
                 To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n{}",
                identity.api_addr(),
                kek.map(|k| unlock_instructions(&k.to_string())).unwrap_or_default(),
            ),
        })
    }

    async fn force_new_cluster(&self) -> Result<ApiResponse, Status> {
        let mut guard = self.member.lock().await;
        let identity = self
            .state
            .load_identity()
            .map_err(status)?
            .filter(|i| i.role == Role::Manager)
            .ok_or_else(|| {
                Status::failed_precondition(
                    "--force-new-cluster needs a manager's state on this node",
                )
            })?;
        let kek = guard.as_ref().and_then(|m| m.kek.clone());
        if let Some(member) = guard.take() {
            member.stop(false).await;
        }
        drop(guard);
        let dek = self
            .state
            .data_key(kek.as_ref())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let raft_id = identity
            .raft_id
            .ok_or_else(|| Status::failed_precondition("manager without a raft id"))?;
        shoal_control::store::force_new_cluster(
            &self.state.raft_dir(),
            raft_id,
            &identity.api_addr(),
            Arc::new(DekSealer(dek)),
        )
        .map_err(status)?;
        let identity = NodeIdentity {
            managers: vec![identity.api_addr()],
            ..identity
        };
        self.state.save_identity(&identity).map_err(status)?;
        let certs = self
            .state
            .load_certs(kek.as_ref())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.become_member(identity.clone(), certs, None, kek)
            .await
            .map_err(status)?;
        Ok(ApiResponse::Done {
            message: format!("Swarm re-initialized: current node ({}) is now the only manager; the state is kept.", identity.node_id),
        })
    }

    async fn join(
        &self,
        token: &str,
        manager: &str,
        advertise: Option<String>,
        listen_port: u16,
    ) -> Result<ApiResponse, Status> {
        if self.member.lock().await.is_some() {
            return Err(Status::already_exists("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one."));
        }
        let parsed: JoinToken = token
            .parse()
            .map_err(|e: ca::CaError| Status::invalid_argument(e.to_string()))?;
        let manager_addr = if manager.contains(':') {
            manager.to_string()
        } else {
            format!("{manager}:2377")
        };
        let sock: SocketAddr = manager_addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Status::invalid_argument(format!("cannot resolve manager address `{manager}`"))
            })?;
        let ca_pem = ca::fetch_root_ca(sock, &parsed.digest)
            .await
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let addr = match advertise {
            Some(a) => a,
            None => local_ip_towards(sock).map_err(status)?.to_string(),
        };
        let NodeKey { key_pem, csr_pem } = NodeKey::generate().map_err(status)?;
        let request = JoinRequest {
            token: token.to_string(),
            csr_pem,
            hostname: self.hostname.clone(),
            addr: addr.clone(),
            listen_port,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{manager_addr}"))
            .map_err(status)?
            .tls_config(ca::tls::client_config(&ca_pem, None).map_err(status)?)
            .map_err(status)?
            .timeout(Duration::from_secs(30));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach {manager_addr}: {e}")))?;
        let reply = CaClient::new(channel)
            .join(Json {
                json: to_json(&request)?,
            })
            .await?;
        let resp: JoinResponse = from_json(&reply.into_inner().json)?;
        let identity = NodeIdentity {
            node_id: resp.node_id.clone(),
            cluster_id: resp.cluster_id,
            role: resp.role,
            hostname: self.hostname.clone(),
            addr,
            listen_port,
            raft_id: resp.raft_id,
            managers: if resp.managers.is_empty() {
                vec![manager_addr]
            } else {
                resp.managers
            },
            autolock: false,
        };
        let certs = Certs {
            ca_pem: resp.ca_pem,
            cert_pem: resp.cert_pem,
            key_pem,
        };
        self.state.save_certs(&certs, None).map_err(status)?;
        self.state.save_identity(&identity).map_err(status)?;
        self.become_member(identity, certs, None, None)
            .await
            .map_err(status)?;
        Ok(ApiResponse::Done {
            message: format!("This node joined a swarm as a {}.", resp.role),
        })
    }

    async fn leave(&self, force: bool) -> Result<ApiResponse, Status> {
        let mut guard = self.member.lock().await;
        let member = guard
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("This node is not part of a swarm"))?;
        if member.manager.is_some() && !force {
            return Err(Status::failed_precondition(
                "You are attempting to leave the swarm on a node that is participating as a manager. \
                 Demote it first with `shoal node demote`, or use `--force` to leave anyway (the remaining \
                 managers may lose quorum).",
            ));
        }
        if let Some(member) = guard.take() {
            member.stop(true).await;
        }
        self.state.wipe().map_err(status)?;
        Ok(ApiResponse::Done {
            message: "Node left the swarm.".into(),
        })
    }

    /// Starts the parts of `identity`'s role. `bootstrap` is the first
    /// cluster and node objects when this node creates the swarm.
    async fn become_member(
        &self,
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
        let handouts = Handouts::new(super::dataplane::load_networks(&self.state.networks_file()));
        let (reports_tx, reports_rx) = tokio::sync::watch::channel(Vec::new());
        // A few batches each way: the session sends one per heartbeat.
        let (fetches_tx, fetches_rx) = mpsc::channel(4);
        let (chunks_tx, chunks_rx) = mpsc::channel(4);
        let plane = Plane::start(
            &read(&identity),
            &self.state,
            &self.run_dir,
            handouts.gossip.subscribe(),
            handouts.networks.subscribe(),
            TaskInputs {
                assignments: handouts.assignments.subscribe(),
                history: handouts.history.subscribe(),
                reports: reports_tx,
                cgroup_root: self.cgroup_root.clone(),
                mesh: self.mesh,
                gossip_view: self.gossip_view.clone(),
                log_fetches: fetches_rx,
                log_chunks: chunks_tx,
            },
        )
        .await
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
            },
            LogLink {
                fetches: fetches_tx,
                chunks: chunks_rx,
            },
        );
        let renewal = schedule_renewal(&read(&certs).cert_pem, self.events.clone());
        *self.member.lock().await = Some(Member {
            identity,
            certs,
            peers,
            session,
            manager,
            renewal,
            kek,
            plane,
        });
        Ok(())
    }

    async fn start_manager(
        &self,
        identity: &Arc<RwLock<NodeIdentity>>,
        certs: &Arc<RwLock<Certs>>,
        peers: &Peers,
        bootstrap: Option<(Cluster, Node)>,
        kek: Option<&UnlockKey>,
    ) -> anyhow::Result<Manager> {
        let id = read(identity);
        let fresh = !self.state.raft_dir().exists();
        let dek = self.state.data_key(kek)?;
        let raft = manager::open_raft(&self.state, &id, peers, Arc::new(DekSealer(dek))).await?;
        let listen = SocketAddr::new("0.0.0.0".parse()?, id.listen_port);
        let is_bootstrap = bootstrap.is_some();
        if is_bootstrap {
            raft.initialize().await?;
        }
        let m = Manager::start(
            raft,
            identity.clone(),
            certs.clone(),
            peers.clone(),
            listen,
            self.gossip_view.clone(),
        )
        .await?;
        m.watch_autolock(kek.map(|k| k.to_string()), self.events.clone());
        if let Some((cluster, node)) = bootstrap {
            let deadline = Instant::now() + Duration::from_secs(10);
            let cmd = Command::Batch(vec![
                Command::Set {
                    kind: "cluster".into(),
                    id: "cluster".into(),
                    value: serde_json::to_value(&cluster)?,
                    expect_version: None,
                },
                Command::Set {
                    kind: "node".into(),
                    id: node.id.clone(),
                    value: serde_json::to_value(&node)?,
                    expect_version: None,
                },
            ]);
            loop {
                match m.ctx.submit(cmd.clone()).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        tracing::debug!("waiting for leadership: {}", e.message());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => anyhow::bail!("could not record the new swarm: {}", e.message()),
                }
            }
        } else if fresh {
            // A new manager: ask the leader to add it to the Raft group.
            let request = ApiRequest::AddManager {
                node_id: id.node_id.clone(),
            };
            let mut last = None;
            for attempt in 0..20 {
                let target = id
                    .managers
                    .get(attempt % id.managers.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                match peers.call(&target, &request).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if let Some(e) = last {
                anyhow::bail!(
                    "the leader did not add this node to the managers: {}",
                    e.message()
                );
            }
        }
        Ok(m)
    }

    /// Applies what the heartbeat session learned.
    async fn react(self: Arc<Self>, mut rx: mpsc::Receiver<SessionEvent>) {
        while let Some(event) = rx.recv().await {
            let result = match event {
                SessionEvent::ManagersChanged(managers) => self.set_managers(managers).await,
                SessionEvent::RoleChanged(role) => self.change_role(role).await,
                SessionEvent::RenewDue => self.renew().await,
                SessionEvent::AutolockChanged(key) => self.rekey(key).await,
                SessionEvent::Removed => {
                    tracing::warn!("this node was removed from the swarm; leaving");
                    self.leave(true)
                        .await
                        .map(|_| ())
                        .map_err(|e| anyhow::anyhow!(e.message().to_string()))
                }
            };
            if let Err(e) = result {
                tracing::warn!("reconfiguring after a session event failed: {e:#}");
            }
        }
    }

    /// Changes this node's identity in memory and in the state dir.
    fn update_identity(
        &self,
        member: &Member,
        change: impl FnOnce(&mut NodeIdentity),
    ) -> anyhow::Result<NodeIdentity> {
        let updated = {
            let mut id = member
                .identity
                .write()
                .map_err(|_| anyhow::anyhow!("identity lock poisoned"))?;
            change(&mut id);
            id.clone()
        };
        self.state.save_identity(&updated)?;
        Ok(updated)
    }

    async fn set_managers(&self, managers: Vec<String>) -> anyhow::Result<()> {
        let guard = self.member.lock().await;
        let Some(member) = guard.as_ref() else {
            return Ok(());
        };
        self.update_identity(member, |id| id.managers = managers)?;
        Ok(())
    }

    /// Scheduled renewal: a new key and certificate, then the next timer.
    async fn renew(&self) -> anyhow::Result<()> {
        let mut guard = self.member.lock().await;
        let Some(member) = guard.as_mut() else {
            return Ok(());
        };
        let result = self.renew_certificate(member).await;
        if result.is_ok() {
            if let Some(m) = member.manager.as_mut() {
                m.restart_server().await?;
            }
            tracing::info!("certificate renewed");
        }
        // On failure, try again soon; the old certificate is still valid.
        let cert = read(&member.certs).cert_pem;
        member.renewal = match &result {
            Ok(_) => schedule_renewal(&cert, self.events.clone()),
            Err(_) => {
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = events.send(SessionEvent::RenewDue).await;
                })
            }
        };
        result.map(|_| ())
    }

    /// Asks a manager for a certificate with a fresh key; installs it.
    async fn renew_certificate(&self, member: &Member) -> anyhow::Result<RenewResponse> {
        let id = read(&member.identity);
        let NodeKey { key_pem, csr_pem } = NodeKey::generate()?;
        let json = to_json(&RenewRequest { csr_pem })?;
        let mut reply = None;
        for addr in &id.managers {
            if let Ok(r) = member.peers.ca_renew(addr, json.clone()).await {
                reply = Some(r);
                break;
            }
        }
        let resp: RenewResponse = from_json(
            &reply.ok_or_else(|| anyhow::anyhow!("no manager renewed the certificate"))?,
        )?;
        let certs = Certs {
            ca_pem: read(&member.certs).ca_pem,
            cert_pem: resp.cert_pem.clone(),
            key_pem,
        };
        self.state.save_certs(&certs, member.kek.as_ref())?;
        *member
            .certs
            .write()
            .map_err(|_| anyhow::anyhow!("cert lock poisoned"))? = certs;
        member.peers.reset();
        Ok(resp)
    }

    /// Autolock was turned on, off or rotated: re-seal this manager's keys.
    async fn rekey(&self, key: Option<String>) -> anyhow::Result<()> {
        let mut guard = self.member.lock().await;
        let Some(member) = guard.as_mut() else {
            return Ok(());
        };
        if member.manager.is_none() {
            return Ok(());
        }
        let kek: Option<UnlockKey> = key.as_deref().map(str::parse).transpose()?;
        let dek = self.state.data_key(member.kek.as_ref())?;
        self.state
            .reseal(&read(&member.certs), Some(&dek), kek.as_ref())?;
        member.kek = kek;
        let autolock = member.kek.is_some();
        let updated = self.update_identity(member, |id| id.autolock = autolock)?;
        tracing::info!(
            "autolock {}",
            if updated.autolock {
                "on: keys sealed"
            } else {
                "off"
            }
        );
        Ok(())
    }

    /// Promotion or demotion: renew the certificate for the new role, then
    /// start or stop the manager parts.
    async fn change_role(&self, role: Role) -> anyhow::Result<()> {
        let mut guard = self.member.lock().await;
        let Some(member) = guard.as_mut() else {
            return Ok(());
        };
        let resp = self.renew_certificate(member).await?;
        if resp.role != role {
            return Ok(());
        }
        self.update_identity(member, |id| {
            id.role = role;
            id.raft_id = resp.raft_id;
        })?;
        match role {
            Role::Manager if member.manager.is_none() => {
                let _ = std::fs::remove_dir_all(self.state.raft_dir());
                let _ = std::fs::remove_file(self.state.dek_file());
                let m = self
                    .start_manager(
                        &member.identity,
                        &member.certs,
                        &member.peers,
                        None,
                        member.kek.as_ref(),
                    )
                    .await?;
                member.manager = Some(m);
                tracing::info!("promoted: now a manager");
            }
            Role::Worker => {
                if let Some(m) = member.manager.take() {
                    m.stop().await;
                }
                let _ = std::fs::remove_dir_all(self.state.raft_dir());
                let _ = std::fs::remove_file(self.state.dek_file());
                // Workers are never locked.
                member.kek = None;
                self.state.save_certs(&read(&member.certs), None)?;
                tracing::info!("demoted: now a worker");
            }
            _ => {}
        }
        Ok(())
    }
}

/// What `swarm init --autolock` and `swarm update --autolock=true` print.
pub fn unlock_instructions(key: &str) -> String {
    format!(
        "\nTo unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Please remember to store this key in a password manager, since without it you\n\
         will not be able to restart the manager.\n"
    )
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

/// The local address the kernel would use to reach `peer`.
fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let sock = UdpSocket::bind(("0.0.0.0", 0))?;
    sock.connect(peer)?;
    Ok(sock.local_addr()?.ip())
}
