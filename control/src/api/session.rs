//! Payloads of the node-facing services: joining (Ca.Join), renewing a
//! certificate (Ca.Renew) and heartbeats (Dispatcher.Heartbeat).

use serde::{Deserialize, Serialize};

use crate::objects::Role;

/// How often agents heartbeat, and how long managers wait before marking a
/// silent node Down (Swarm: 5 s and ~15 s).
pub const HEARTBEAT_PERIOD_MS: u64 = 500;
pub const DOWN_AFTER_MS: u64 = 2_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// The node's certificate request; the CA signs it with the role the
    /// token grants.
    pub csr_pem: String,
    pub hostname: String,
    /// The node's advertise address (an IP).
    pub addr: String,
    /// Port its manager API would listen on (2377).
    pub listen_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    pub cert_pem: String,
    pub ca_pem: String,
    /// Set when joining as a manager.
    pub raft_id: Option<u64>,
    /// `ip:port` of every manager, the leader first when known.
    pub managers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
    pub role: Role,
    pub raft_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The role the managers hold for this node; a change means the node
    /// must renew its certificate and start or stop its manager parts.
    pub role: Role,
    pub managers: Vec<String>,
    pub period_ms: u64,
}
