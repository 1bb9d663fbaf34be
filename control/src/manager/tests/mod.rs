//! The manager core against an in-memory store: a swarm of nodes in a
//! [`MemStore`], one or two managers on it, requests as the CLI and nodes
//! make them.

mod dispatch;
mod limits;
mod races;
mod requests;

use std::sync::{Arc, OnceLock};

use super::*;
use crate::api::{
    ApiRequest, ApiResponse, Heartbeat, HeartbeatResponse, JoinRequest, JoinResponse,
};
use crate::ca::{JoinToken, RootCa};
use crate::objects::{Network, Node, NodeState, Role, Service, ServiceSpec};
use crate::orchestrator::tests::{node as worker_node, spec as service_spec};
use crate::store::Command;

pub(super) type TestManager = Manager<Arc<MemStore>, Relay>;

/// Manager `i`'s node id, address and Raft id.
pub(super) fn manager_identity(i: u64) -> ManagerIdentity {
    ManagerIdentity {
        node_id: format!("mgr{i}"),
        cluster_id: "cluster1".into(),
        addr: format!("198.18.0.{}", 100 + i),
        listen_port: 2377,
        raft_id: i,
    }
}

/// Manager `i` as a node object.
pub(super) fn manager_node(i: u64) -> Node {
    let me = manager_identity(i);
    Node {
        id: me.node_id,
        hostname: format!("m{i}"),
        addr: me.addr,
        listen_port: 0,
        role: Role::Manager,
        raft_id: Some(i),
        ..worker_node(0)
    }
}

/// Worker `i` as a node object (`node00i`, hostname `hi`).
pub(super) fn worker(i: usize) -> Node {
    worker_node(i)
}

/// A link that calls another core in memory, as `caller`.
#[derive(Clone)]
pub(super) struct Relay {
    to: Arc<OnceLock<Arc<TestManager>>>,
    caller: Caller,
}

impl Relay {
    fn target(&self, manager: &str) -> Result<Arc<TestManager>, ManagerError> {
        self.to
            .get()
            .cloned()
            .ok_or_else(|| ManagerError::Unreachable {
                manager: manager.to_string(),
                detail: "no other manager in this test".into(),
            })
    }
}

impl Link for Relay {
    fn call(
        &self,
        manager: &str,
        request: &ApiRequest,
    ) -> impl std::future::Future<Output = Result<ApiResponse, ManagerError>> + Send {
        let (target, caller, request) =
            (self.target(manager), self.caller.clone(), request.clone());
        let call: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            Box::pin(async move { target?.handle(&caller, request).await });
        call
    }

    fn heartbeat(
        &self,
        manager: &str,
        heartbeat: &Heartbeat,
    ) -> impl std::future::Future<Output = Result<HeartbeatResponse, ManagerError>> + Send {
        let (target, caller, heartbeat) =
            (self.target(manager), self.caller.clone(), heartbeat.clone());
        let call: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            Box::pin(async move { target?.heartbeat(&caller, heartbeat).await });
        call
    }

    fn join(
        &self,
        manager: &str,
        request: &JoinRequest,
    ) -> impl std::future::Future<Output = Result<JoinResponse, ManagerError>> + Send {
        let (target, request) = (self.target(manager), request.clone());
        let call: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            Box::pin(async move { target?.join(request).await });
        call
    }
}

/// A swarm in a [`MemStore`]: the cluster object, managers and workers.
pub(super) struct Swarm {
    pub store: Arc<MemStore>,
    pub gossip: GossipView,
}

impl Swarm {
    /// `managers` managers (manager 1 leads) and `workers` workers.
    pub fn new(managers: u64, workers: usize) -> Swarm {
        let store = Arc::new(MemStore::default());
        let root = RootCa::generate("cluster1").unwrap();
        let cluster = Cluster {
            id: "cluster1".into(),
            ca_cert_pem: root.cert_pem().to_string(),
            ca_key_pem: root.key_pem().to_string(),
            worker_secret: JoinToken::new_secret().unwrap(),
            manager_secret: JoinToken::new_secret().unwrap(),
            cert_expiry_secs: 3600,
            autolock: false,
            unlock_key: None,
            gossip_key: vec![7; 32],
            strategy: Default::default(),
            max_replicas: crate::objects::DEFAULT_MAX_REPLICAS,
            task_history_limit: crate::objects::DEFAULT_TASK_HISTORY_LIMIT,
            ingress_removed: false,
            created_at: 0,
        };
        store.apply(&Command::put(&cluster, None).unwrap());
        for i in 1..=managers {
            store.apply(&Command::put(&manager_node(i), None).unwrap());
        }
        for i in 1..=workers {
            store.apply(&Command::put(&worker(i), None).unwrap());
        }
        let swarm = Swarm {
            store,
            gossip: GossipView::default(),
        };
        swarm.lead(1);
        swarm
    }

    /// Makes manager `i` the leader.
    pub fn lead(&self, i: u64) {
        self.store.set_leader(Some(Leader {
            raft_id: i,
            addr: manager_identity(i).api_addr(),
        }));
    }

    /// Manager `i`, reaching `other` (if any) as itself.
    pub fn manager_linked(&self, i: u64, other: Option<Arc<TestManager>>) -> Arc<TestManager> {
        let me = manager_identity(i);
        let link = Relay {
            to: Arc::new(OnceLock::new()),
            caller: Caller::Node {
                node_id: me.node_id.clone(),
                role: Role::Manager,
            },
        };
        if let Some(other) = other {
            let _ = link.to.set(other);
        }
        let reach = Reach::default();
        Arc::new(Manager::new(
            self.store.clone(),
            link,
            me,
            reach,
            self.gossip.clone(),
        ))
    }

    /// Manager `i` alone.
    pub fn manager(&self, i: u64) -> Arc<TestManager> {
        self.manager_linked(i, None)
    }

    pub fn node(&self, id: &str) -> Option<Node> {
        self.store.read().one::<Node>(id).unwrap().map(|v| v.value)
    }

    pub fn networks(&self) -> Vec<Network> {
        self.store.read().all().unwrap()
    }

    pub fn services(&self) -> Vec<Service> {
        self.store.read().all().unwrap()
    }
}

/// The CLI on the manager's own socket.
pub(super) async fn local(
    m: &TestManager,
    request: ApiRequest,
) -> Result<ApiResponse, ManagerError> {
    m.handle(&Caller::Local, request).await
}

/// A service spec on network `net` (none when empty), with `replicas`.
pub(super) fn spec_on(name: &str, net: &str, replicas: u64) -> ServiceSpec {
    let mut spec = service_spec(name, replicas);
    spec.networks = if net.is_empty() {
        vec![]
    } else {
        vec![net.to_string()]
    };
    spec
}

/// `network create NAME`.
pub(super) async fn create_network(m: &TestManager, name: &str) -> Network {
    let created = local(
        m,
        ApiRequest::NetworkCreate {
            name: name.into(),
            driver: None,
            subnet: None,
            gateway: None,
            mtu: None,
            labels: Default::default(),
            ingress: false,
            attachable: false,
        },
    )
    .await
    .unwrap();
    let ApiResponse::Network { network } = created else {
        panic!("{created:?}")
    };
    m.store()
        .read()
        .one::<Network>(&network.id)
        .unwrap()
        .unwrap()
        .value
}

/// `service create` of `spec`.
pub(super) async fn create_service(
    m: &TestManager,
    spec: ServiceSpec,
) -> Result<ApiResponse, ManagerError> {
    local(
        m,
        ApiRequest::ServiceCreate {
            spec: Box::new(spec),
        },
    )
    .await
}

pub(super) fn ready(node: &Node) -> bool {
    node.state == NodeState::Ready
}
