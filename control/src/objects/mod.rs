//! The objects of a swarm as users and agents see them, and the pure
//! decisions about them (network allocation, gossip key rotation).
//!
//! Each type validates itself; an invalid object never reaches the data plane.

mod cluster;
mod container;
mod gossip_keys;
mod guards;
mod hostname;
mod ids;
mod ipam;
mod lookup;
mod mac;
mod network;
mod node;
mod payload;
mod service;
mod task;

pub use cluster::{
    Cluster, CLUSTER_ID, DEFAULT_CERT_EXPIRY_SECS, DEFAULT_MAX_REPLICAS, DEFAULT_TASK_HISTORY_LIMIT,
};
pub use container::{host_entry, ContainerSpec, HealthSpec, MountKind, MountSpec, RegistryAuth};
pub use gossip_keys::{
    gossip_config_at, GossipKey, GossipKeyring, Rotation, StoredGossipKey, GOSSIP_KEYRING_ID,
    INITIAL_GOSSIP_KEY_ID, KEY_PROMOTE_AFTER_MS, KEY_RETIRE_AFTER_MS,
};
pub use guards::{GuardVersions, NetworkGuard, ServiceGuard};
pub use hostname::{render as render_hostname, TaskNames};
pub use ids::{
    new_cluster_id, new_network_id, new_node_id, new_payload_id, new_service_id, new_task_id,
    to_base36, ID_LEN,
};
pub use ipam::{
    check_underlay, create_command, free_subnet, lowest_free_vni, networks_and_guard, overlaps,
    parse_subnet, plan_network, NetworkCreateError, NetworkRequest, DEFAULT_POOL,
    DEFAULT_SUBNET_PREFIX,
};
pub use lookup::{find, LookupError, Named};
pub use mac::{MacAddr, MacParseError};
pub use network::{
    Endpoint, Network, NetworkError, NetworkSpec, OVERLAY_DRIVER, VNI_MAX, VNI_MIN, VXLAN_OVERHEAD,
};
pub use node::{Availability, BuildFailures, Node, NodeResources, NodeState, Role, SandboxFailure};
pub use payload::{
    check_name, Config, ConfigKind, Payload, PayloadData, PayloadError, PayloadFile, PayloadKind,
    PayloadReference, Secret, SecretKind, CONFIGS_BASE, MAX_PAYLOAD_BYTES, SECRETS_BASE,
};
pub use service::{
    spread_label, Constraint, EndpointMode, FailureAction, Placement, PortConfig, Protocol,
    PublishMode, Resources, RestartCondition, RestartPolicy, Service, ServiceMode, ServiceSpec,
    ServiceSpecError, Strategy, TaskSpec, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
    VirtualIp,
};
pub use task::{Task, TaskAttachment, TaskState, TaskStatus};
