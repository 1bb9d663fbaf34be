//! The cluster API as the CLI and agents use it: requests, responses and
//! the payloads of the node-facing services. The transport is a single gRPC
//! method carrying these types as JSON (see `proto/control.proto`); keeping
//! them as Rust enums keeps one definition. What a manager decides on them
//! lives in [`crate::manager`].

mod answer;
mod local;
mod logs;
mod payload_view;
mod service_view;
mod session;
mod view;

pub use answer::{Answer, ClusterInfo, Done, TokenAnswer, UnexpectedAnswer};
pub use local::LocalRequest;
pub use logs::{
    rfc3339_nanos, LogChunk, LogCursor, LogFetch, LogLine, LogQuery, LogStart, LogStream, TaskLogs,
};
pub use payload_view::{ObjectVersion, PayloadSpecView, PayloadView};
pub use service_view::{ports_column, ServiceView, TaskView, VirtualIpView};
pub use session::*;
pub use view::{
    rfc3339, IpamConfigView, IpamView, ManagerStatus, NetworkFailureView, NetworkView, NodeView,
    Reachability, MTU_OPTION, VXLANID_OPTION,
};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::objects::{Availability, PayloadData, Role, ServiceSpec, Strategy};

/// What a client may ask. Variants marked "manager" are refused to worker
/// certificates and answered only by managers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ApiRequest {
    /// Any node: what this node is and knows.
    Info,
    /// manager: `swarm join-token ROLE [--rotate]`.
    JoinToken { role: Role, rotate: bool },
    /// manager: `node ls`.
    NodeList,
    /// manager: `node inspect NODE` (id, id prefix or hostname).
    NodeInspect { node: String },
    /// manager: `node update`.
    NodeUpdate {
        node: String,
        availability: Option<Availability>,
        label_add: Vec<(String, String)>,
        label_rm: Vec<String>,
    },
    /// manager: `node promote` / `node demote`.
    NodeSetRole { node: String, role: Role },
    /// manager: `node rm [--force]`.
    NodeRemove { node: String, force: bool },
    /// manager: `swarm update --autolock` / `--cert-expiry` /
    /// `--rotate-gossip-key`.
    SwarmUpdate {
        autolock: Option<bool>,
        cert_expiry_secs: Option<u64>,
        /// Adds a gossip key: accepted at once, primary a few seconds later.
        #[serde(default)]
        rotate_gossip_key: bool,
    },
    /// manager: the current unlock key (`swarm unlock-key`).
    UnlockKey,
    /// manager: `network create`; answers [`ApiResponse::Network`].
    NetworkCreate {
        name: String,
        /// Only `overlay` (the default) is accepted.
        #[serde(default)]
        driver: Option<String>,
        /// CIDR; default: the first free /24 of 10.0.0.0/8.
        #[serde(default)]
        subnet: Option<String>,
        /// Default: the subnet's first host address.
        #[serde(default)]
        gateway: Option<String>,
        /// `--opt mtu=N`.
        #[serde(default)]
        mtu: Option<u32>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        /// `--ingress`: the swarm's routing-mesh network (at most one).
        #[serde(default)]
        ingress: bool,
        /// `--attachable` (refused with `--ingress`, as in Swarm).
        #[serde(default)]
        attachable: bool,
    },
    /// manager: `network ls`.
    NetworkList,
    /// manager: `network inspect NETWORK` (id, name or unique id prefix).
    NetworkInspect { name_or_id: String },
    /// manager: `network rm NETWORK`; answers [`ApiResponse::Done`] with the
    /// network's name.
    NetworkRemove { name_or_id: String },
    /// manager: `service create`. The spec's networks are names or ids;
    /// the manager stores ids. Answers [`ApiResponse::Service`].
    ServiceCreate { spec: Box<ServiceSpec> },
    /// manager: `service ls`.
    ServiceList,
    /// manager: `service inspect SERVICE` (id, name or unique id prefix).
    ServiceInspect { service: String },
    /// manager: `service update`: the whole new spec, and the version it was
    /// made from (refused if the service changed since). `force` replaces
    /// every task even when the spec did not change.
    ServiceUpdate {
        service: String,
        spec: Box<ServiceSpec>,
        version: Option<u64>,
        #[serde(default)]
        force: bool,
    },
    /// manager: `service scale SERVICE=N`.
    ServiceScale { service: String, replicas: u64 },
    /// manager: `service rollback`: back to the previous spec.
    ServiceRollback { service: String },
    /// manager: `service rm`.
    ServiceRemove { service: String },
    /// manager: `service ps SERVICE`; answers [`ApiResponse::Tasks`].
    ServicePs { service: String },
    /// manager: `node ps NODE`; answers [`ApiResponse::Tasks`].
    NodePs { node: String },
    /// manager: `service logs`; answered by the leader with
    /// [`ApiResponse::Logs`].
    ServiceLogs { query: LogQuery },
    /// manager: `swarm update --scheduling-strategy`.
    SetStrategy { strategy: Strategy },
    /// manager: `swarm update --max-replicas`: the cap on a service's
    /// replicas.
    SetMaxReplicas { max_replicas: u64 },
    /// manager: `swarm init|update --task-history-limit`: tasks kept per
    /// slot, the current one included; negative keeps all.
    SetTaskHistoryLimit { limit: i64 },
    /// manager (internal): a node that joined or was promoted as a manager
    /// is ready; the leader adds it to the Raft group.
    AddManager { node_id: String },
    /// manager: `secret create`; answers [`ApiResponse::Payload`].
    SecretCreate {
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        data: PayloadData,
    },
    /// manager: `secret ls`; never carries the data.
    SecretList,
    /// manager: `secret inspect SECRET` (id, name or unique id prefix).
    SecretInspect { secret: String },
    /// manager: `secret rm SECRET`; refused while a service uses it.
    SecretRemove { secret: String },
    /// manager: a secret's or config's update (Engine API, `stack
    /// deploy`): only the labels may change; the same data is accepted.
    /// `version` is the one read (refused if it moved since).
    PayloadUpdate {
        class: PayloadClass,
        name_or_id: String,
        #[serde(default)]
        version: Option<u64>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        data: Option<PayloadData>,
    },
    /// manager: `config create`; answers [`ApiResponse::Payload`].
    ConfigCreate {
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        data: PayloadData,
    },
    /// manager: `config ls`.
    ConfigList,
    /// manager: `config inspect CONFIG`.
    ConfigInspect { config: String },
    /// manager: `config rm CONFIG`; refused while a service uses it.
    ConfigRemove { config: String },
}

/// Secrets or configs, where a request serves both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadClass {
    Secret,
    Config,
}

/// Who may make a request, and which manager answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any node, workers too; the manager asked answers.
    Anyone,
    /// Managers; answered from the manager's own copy of the store, so it
    /// works without quorum.
    Read,
    /// Managers; changes nothing, but only the leader can answer (it alone
    /// hears the nodes' heartbeats).
    LeaderRead,
    /// Managers; changes cluster state, so the leader commits it, with quorum.
    Write,
}

impl Access {
    pub fn workers_allowed(self) -> bool {
        self == Access::Anyone
    }

    pub fn needs_leader(self) -> bool {
        matches!(self, Access::LeaderRead | Access::Write)
    }

    pub fn is_write(self) -> bool {
        self == Access::Write
    }
}

impl ApiRequest {
    /// Who may make it and who answers it: a property of every request.
    pub fn access(&self) -> Access {
        match self {
            ApiRequest::Info => Access::Anyone,
            ApiRequest::NodeList
            | ApiRequest::NodeInspect { .. }
            | ApiRequest::NetworkList
            | ApiRequest::NetworkInspect { .. }
            | ApiRequest::UnlockKey
            | ApiRequest::ServiceList
            | ApiRequest::ServiceInspect { .. }
            | ApiRequest::ServicePs { .. }
            | ApiRequest::NodePs { .. }
            | ApiRequest::SecretList
            | ApiRequest::SecretInspect { .. }
            | ApiRequest::ConfigList
            | ApiRequest::ConfigInspect { .. }
            | ApiRequest::JoinToken { rotate: false, .. } => Access::Read,
            ApiRequest::ServiceLogs { .. } => Access::LeaderRead,
            ApiRequest::JoinToken { rotate: true, .. }
            | ApiRequest::NodeUpdate { .. }
            | ApiRequest::NodeSetRole { .. }
            | ApiRequest::NodeRemove { .. }
            | ApiRequest::SwarmUpdate { .. }
            | ApiRequest::NetworkCreate { .. }
            | ApiRequest::NetworkRemove { .. }
            | ApiRequest::ServiceCreate { .. }
            | ApiRequest::ServiceUpdate { .. }
            | ApiRequest::ServiceScale { .. }
            | ApiRequest::ServiceRollback { .. }
            | ApiRequest::ServiceRemove { .. }
            | ApiRequest::SetStrategy { .. }
            | ApiRequest::SetMaxReplicas { .. }
            | ApiRequest::SecretCreate { .. }
            | ApiRequest::SecretRemove { .. }
            | ApiRequest::ConfigCreate { .. }
            | ApiRequest::ConfigRemove { .. }
            | ApiRequest::PayloadUpdate { .. }
            | ApiRequest::SetTaskHistoryLimit { .. }
            | ApiRequest::AddManager { .. } => Access::Write,
        }
    }

    /// Whether a worker certificate may make this request.
    pub fn workers_allowed(&self) -> bool {
        self.access().workers_allowed()
    }

    /// Whether only the leader can answer: writes, and `service logs`.
    pub fn needs_leader(&self) -> bool {
        self.access().needs_leader()
    }

    /// Whether the request changes cluster state (needs the leader and quorum).
    pub fn is_write(&self) -> bool {
        self.access().is_write()
    }
}

/// What the cluster answers. A client turns it into the payload it expects
/// with [`Answer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiResponse {
    Info(ClusterInfo),
    Token {
        token: String,
        addr: String,
    },
    Nodes {
        nodes: Vec<NodeView>,
    },
    Node {
        node: Box<NodeView>,
    },
    Networks {
        networks: Vec<NetworkView>,
    },
    Network {
        network: Box<NetworkView>,
    },
    Services {
        services: Vec<ServiceView>,
    },
    Service {
        service: Box<ServiceView>,
    },
    Tasks {
        tasks: Vec<TaskView>,
    },
    Logs {
        tasks: Vec<TaskLogs>,
    },
    Done {
        message: String,
    },
    /// Secrets or configs (`secret ls`, `config ls`).
    Payloads {
        items: Vec<PayloadView>,
    },
    /// One secret or config.
    Payload {
        item: Box<PayloadView>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_may_only_ask_info() {
        assert!(ApiRequest::Info.workers_allowed());
        assert!(!ApiRequest::NodeList.workers_allowed());
        assert!(!ApiRequest::NodeList.is_write());
        assert!(ApiRequest::NodeRemove {
            node: "x".into(),
            force: false
        }
        .is_write());
        assert!(!ApiRequest::JoinToken {
            role: Role::Worker,
            rotate: false
        }
        .is_write());
        assert!(ApiRequest::JoinToken {
            role: Role::Worker,
            rotate: true
        }
        .is_write());
    }

    #[test]
    fn logs_are_a_read_that_only_the_leader_answers() {
        let logs = ApiRequest::ServiceLogs {
            query: LogQuery {
                target: "web".into(),
                ..LogQuery::default()
            },
        };
        assert!(!logs.is_write() && logs.needs_leader() && !logs.workers_allowed());
        assert!(!ApiRequest::ServicePs {
            service: "web".into()
        }
        .needs_leader());
        let json = serde_json::to_string(&ApiResponse::Logs { tasks: vec![] }).unwrap();
        assert_eq!(json, r#"{"kind":"logs","tasks":[]}"#);
    }

    #[test]
    fn network_reads_are_for_managers_and_not_writes() {
        let inspect = ApiRequest::NetworkInspect {
            name_or_id: "web".into(),
        };
        for read in [ApiRequest::NetworkList, inspect] {
            assert!(!read.workers_allowed());
            assert!(!read.is_write());
        }
        let rm = ApiRequest::NetworkRemove {
            name_or_id: "web".into(),
        };
        assert!(!rm.workers_allowed());
        assert!(rm.is_write());
    }

    #[test]
    fn new_fields_have_defaults_for_older_clients() {
        let update: ApiRequest = serde_json::from_str(
            r#"{"op":"swarm_update","autolock":null,"cert_expiry_secs":null}"#,
        )
        .unwrap();
        assert_eq!(
            update,
            ApiRequest::SwarmUpdate {
                autolock: None,
                cert_expiry_secs: None,
                rotate_gossip_key: false
            }
        );
        let create: ApiRequest =
            serde_json::from_str(r#"{"op":"network_create","name":"web"}"#).unwrap();
        assert!(create.is_write());
        assert!(
            matches!(create, ApiRequest::NetworkCreate { name, driver: None, .. } if name == "web")
        );
    }

    #[test]
    fn requests_travel_as_tagged_json() {
        let req = ApiRequest::NodeSetRole {
            node: "n1".into(),
            role: Role::Manager,
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"op":"node_set_role","node":"n1","role":"manager"}"#
        );
        assert_eq!(serde_json::from_str::<ApiRequest>(&json).unwrap(), req);
    }
}
