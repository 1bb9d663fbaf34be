//! The objects of a swarm as users and agents see them, and the pure
//! decisions about them (network allocation, gossip key rotation).
//!
//! Each type validates itself; an invalid object never reaches the data plane.

mod cluster;
mod gossip_keys;
mod ipam;
mod mac;
mod network;
mod node;
mod service;
mod task;

pub use cluster::{Cluster, DEFAULT_CERT_EXPIRY_SECS};
pub use gossip_keys::{
    gossip_config_at, GossipKeyring, Rotation, StoredGossipKey, INITIAL_GOSSIP_KEY_ID,
    KEY_PROMOTE_AFTER_MS, KEY_RETIRE_AFTER_MS,
};
pub use ipam::{
    create_command, free_subnet, lowest_free_vni, networks_and_guard, overlaps, parse_subnet,
    plan_network, AllocationGuard, NetworkCreateError, NetworkRequest, ALLOCATION_GUARD_ID,
    ALLOCATION_GUARD_KIND, DEFAULT_POOL, DEFAULT_SUBNET_PREFIX,
};
pub use mac::{MacAddr, MacParseError};
pub use network::{
    Endpoint, Network, NetworkError, NetworkLookupError, NetworkSpec, OVERLAY_DRIVER, VNI_MAX,
    VNI_MIN, VXLAN_OVERHEAD,
};
pub use node::{new_node_id, to_base36, Availability, Node, NodeResources, NodeState, Role};
pub use service::{
    spread_label, Constraint, FailureAction, Placement, PortConfig, Protocol, Resources,
    RestartCondition, RestartPolicy, Service, ServiceMode, ServiceSpec, ServiceSpecError, Strategy,
    TaskSpec, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus, VirtualIp,
};
pub use task::{Task, TaskAttachment, TaskState, TaskStatus};
