//! The cluster-wide object: identity, CA material, join secrets and settings.

use serde::{Deserialize, Serialize};

use crate::store::{kind, Object};

/// Default lifetime of node certificates (Swarm's: 90 days).
pub const DEFAULT_CERT_EXPIRY_SECS: u64 = 90 * 24 * 3600;

/// Default cap on a replicated service's replicas (`swarm update
/// --max-replicas` raises it).
pub const DEFAULT_MAX_REPLICAS: u64 = 10_000;

fn default_max_replicas() -> u64 {
    DEFAULT_MAX_REPLICAS
}

/// Tasks kept per slot, the current one included (Docker's
/// `--task-history-limit`, default 5).
pub const DEFAULT_TASK_HISTORY_LIMIT: i64 = 5;

fn default_task_history_limit() -> i64 {
    DEFAULT_TASK_HISTORY_LIMIT
}

/// One per swarm, created by `swarm init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    /// Root CA certificate (PEM); its SHA-256 digest is in every join token.
    pub ca_cert_pem: String,
    /// Root CA private key (PEM). Only managers hold the store, and the store
    /// is encrypted at rest when autolock is on.
    pub ca_key_pem: String,
    /// Secret half of the worker join token (25 base36 characters).
    pub worker_secret: String,
    /// Secret half of the manager join token.
    pub manager_secret: String,
    /// Lifetime of node certificates; renewal starts at 50-80% of it.
    pub cert_expiry_secs: u64,
    /// Whether managers keep their Raft data and keys encrypted at rest.
    #[serde(default)]
    pub autolock: bool,
    /// The key that unlocks autolocked managers (`SWMKEY-1-...`); every
    /// manager seals its key files with it. `None` when autolock is off.
    #[serde(default)]
    pub unlock_key: Option<String>,
    /// The first key of the gossip layer (key id 1, 32 random bytes); the
    /// keys `swarm update --rotate-gossip-key` adds are in a separate
    /// [`super::GossipKeyring`], and [`super::gossip_config_at`] decides
    /// which keys nodes hold.
    #[serde(default)]
    pub gossip_key: Vec<u8>,
    /// How tasks are placed unless their service says otherwise.
    #[serde(default)]
    pub strategy: super::Strategy,
    /// The most replicas a service may ask for, so one mistyped
    /// `service scale` cannot make the leader create billions of tasks.
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u64,
    /// Tasks kept per slot, the current one included; negative keeps all
    /// (`swarm init|update --task-history-limit`).
    #[serde(default = "default_task_history_limit")]
    pub task_history_limit: i64,
    /// Set when the ingress network is removed (`network rm`): the leader
    /// no longer makes the default one, and `network create --ingress`
    /// makes the next, as in Swarm (which makes its ingress network once,
    /// at `swarm init`).
    #[serde(default)]
    pub ingress_removed: bool,
    /// Unix seconds.
    pub created_at: u64,
}
/// The cluster object's id in its kind (there is one).
pub const CLUSTER_ID: &str = "cluster";

impl Object for Cluster {
    const KIND: &'static str = kind::CLUSTER;
    fn id(&self) -> &str {
        CLUSTER_ID
    }
}
