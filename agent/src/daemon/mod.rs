//! `shoal agent`: the per-host daemon. It serves the CLI on a Unix socket,
//! remembers its swarm membership in the state dir, and runs the parts its
//! role needs: every node heartbeats to the managers; managers also run the
//! Raft store and the manager API (see `manager`).
//!
//! It never decides cluster state on its own: that is the managers' store.

pub(crate) mod agent;
mod at_rest;
mod balancer;
mod dataplane;
mod identity;
mod local;
mod manager;
mod metrics;

/// What this node's gossip says of each member, by node id: `true` while
/// alive or suspect. Written by the data-plane loop, read by the managers'
/// down detector, which marks a silent node Down quickly only when gossip
/// agrees.
pub type GossipView = std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, bool>>>;
mod names;
mod peers;
mod plane;
mod sandboxes;
mod task_logs;
mod tasks;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

pub use agent::Agent;
pub use dataplane::DataPlaneStatus;
pub use plane::{EndpointLine, MembersReport};

/// Where the daemon keeps things.
#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub hostname: Option<String>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The cgroup holding one cgroup per task.
    pub cgroup_root: PathBuf,
    /// The node's load balancer.
    pub mesh: crate::balancer::MeshConfig,
    /// What this node offers to reservations (default: what it has).
    pub resources: shoal_control::objects::NodeResources,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    install_crypto_provider();
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    let agent = Arc::new(Agent::new(&opts)?);
    agent.clone().resume().await?;
    let server = local::serve(agent.clone(), &opts.socket).await?;
    let metrics = match opts.metrics_addr {
        Some(addr) => Some(metrics::serve(agent.clone(), addr).await?),
        None => None,
    };
    tracing::info!("shoal agent ready on {}", opts.socket.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    agent.shutdown().await;
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

/// rustls needs one process-wide crypto provider; shoal uses ring only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
