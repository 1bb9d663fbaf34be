//! The objects of a swarm as users and agents see them.
//!
//! Each type validates itself; an invalid object never reaches the data plane.

mod cluster;
mod mac;
mod network;
mod node;

pub use cluster::{Cluster, DEFAULT_CERT_EXPIRY_SECS};
pub use mac::{MacAddr, MacParseError};
pub use network::{Endpoint, NetworkError, NetworkSpec, VNI_MAX, VNI_MIN, VXLAN_OVERHEAD};
pub use node::{new_node_id, to_base36, Availability, Node, NodeState, Role};
