//! What the CLI asks of its local agent over the Unix socket: the cluster API
//! plus the verbs that change the agent itself (init, join, leave, unlock).

use serde::{Deserialize, Serialize};

use super::ApiRequest;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "local", rename_all = "snake_case")]
pub enum LocalRequest {
    /// `swarm init`.
    Init {
        advertise_addr: String,
        listen_port: u16,
        force_new_cluster: bool,
        autolock: bool,
        cert_expiry_secs: Option<u64>,
    },
    /// `swarm join --token TOKEN MANAGER`.
    Join {
        token: String,
        manager: String,
        advertise_addr: Option<String>,
        listen_port: u16,
    },
    /// `swarm leave [--force]`.
    Leave { force: bool },
    /// `swarm unlock`.
    Unlock { key: String },
    /// Anything for the cluster; managers answer it, workers refuse.
    Api(ApiRequest),
    /// `members`: this node's gossip view (answered as `Info`).
    Members,
    /// `endpoint create`: attach a standalone sandbox to a network on this
    /// node and publish its endpoint in gossip.
    EndpointCreate {
        id: String,
        network: String,
        ip: std::net::Ipv4Addr,
        service: String,
        /// `PUBLISHED:TARGET[/tcp|udp]`.
        publish: Vec<String>,
    },
    /// `endpoint rm`.
    EndpointRemove { id: String },
    /// `endpoint ls`: every endpoint in this node's gossip tables (`Info`).
    EndpointList,
}
