//! `shoal agent`: the per-host daemon. It serves the CLI on a Unix socket
//! (`local`), remembers its swarm membership in the state dir, and runs the
//! parts its role needs (`agent`): every node heartbeats to the managers
//! (`worker`) and runs gossip, the overlay and its tasks (`plane`);
//! managers also run the manager role (`manager`), which wires the manager
//! core of `shoal_control::manager` to the Raft store and port 2377.
//!
//! It never decides cluster state on its own: the manager core does. It
//! owns one lifecycle: a root cancellation token, every long-lived task on
//! one tracker, and a SIGTERM that stops accepting, answers the requests in
//! flight, then stops the parts in order, within [`SHUTDOWN_LIMIT`].

mod agent;
mod answer;
mod at_rest;
mod balancer;
mod dataplane;
mod docker_api;
mod identity;
mod key_dir;
mod launch;
mod listening;
mod local;
mod lock;
mod manager;
mod metrics;
mod names;
mod peers;
mod plane;
mod runtimes;
mod sandboxes;
mod task_logs;
mod tasks;
mod vitals;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use agent::{Agent, AgentError};
pub use answer::LocalAnswer;
pub use dataplane::DataPlaneStatus;
pub use plane::{EndpointLine, MembersReport};

/// The longest a stop may take: requests in flight finish, then the parts
/// stop; past this the daemon exits anyway (and says so).
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(20);

/// Where the daemon keeps things.
#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// The Docker Engine API's socket, if served.
    pub docker_socket: Option<PathBuf>,
    pub hostname: Option<String>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The cgroup holding one cgroup per task.
    pub cgroup_root: PathBuf,
    /// The node's load balancer.
    pub mesh: crate::balancer::MeshConfig,
    /// What this node offers to reservations (default: what it has).
    pub resources: shoal_control::objects::NodeResources,
    /// Which registries the node pulls from over plain HTTP.
    pub registries: crate::image::RegistryOptions,
    /// Bytes of each task output kept on disk.
    pub task_log_limit: u64,
    /// How long the managers keep this node's tasks while its agent
    /// restarts (told in the last heartbeat on SIGTERM); zero: not asked.
    pub restart_window: Duration,
}

/// Runs the daemon until SIGINT or SIGTERM, then stops it: the socket and
/// the metrics stop accepting, the requests in flight are answered, the
/// member's parts stop (the session, after telling the managers it is
/// restarting, gossip and the overlay, the manager role); the tasks keep
/// running, for the next agent to adopt.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    install_crypto_provider();
    identity::StateDir::new(&opts.state_dir)
        .make_private()
        .with_context(|| {
            format!(
                "cannot create state dir {} (or make it private: 0700, files 0600)",
                opts.state_dir.display()
            )
        })?;
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("cannot create run dir {}", opts.run_dir.display()))?;
    // Held until the daemon returns: one agent per state dir and run dir.
    let _state_lock = lock::DirLock::take(&opts.state_dir)?;
    let _run_lock = if opts.run_dir != opts.state_dir {
        Some(lock::DirLock::take(&opts.run_dir)?)
    } else {
        None
    };
    let root = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Stopped last: the membership and every part of the member.
    let parts = root.child_token();
    let agent = Arc::new(Agent::start(&opts, &tasks, parts.clone()).await?);
    // Stopped first: what accepts requests.
    let doors = root.child_token();
    let local = local::serve(agent.clone(), &opts.socket, &tasks, doors.clone()).await?;
    let docker = match &opts.docker_socket {
        Some(path) => Some(
            crate::docker_api::serve(
                docker_api::backend(agent.clone()),
                path,
                &tasks,
                doors.clone(),
            )
            .await?,
        ),
        None => None,
    };
    if let Some(addr) = opts.metrics_addr {
        metrics::serve(agent.clone(), addr, &tasks, doors.clone()).await?;
    }
    tracing::info!(
        target: "shoal::lifecycle",
        "shoal agent {} (pid {}) started: socket {}, Docker API {}, metrics {}, mesh {:?} \
         (attach {:?}), state dir {}, restart window {} s",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        opts.socket.display(),
        opts.docker_socket
            .as_ref()
            .map_or("off".to_string(), |p| p.display().to_string()),
        opts.metrics_addr.map_or("off".to_string(), |a| a.to_string()),
        opts.mesh.mode,
        opts.mesh.attach,
        opts.state_dir.display(),
        opts.restart_window.as_secs()
    );
    let mut term = signal(SignalKind::terminate())?;
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    let started = Instant::now();
    tracing::info!(
        target: "shoal::lifecycle",
        "stopping on {reason}: this node's tasks keep running and are adopted when the agent starts again"
    );
    let stop = async {
        doors.cancel();
        let _ = local.await;
        if let Some(docker) = docker {
            let _ = docker.await;
        }
        parts.cancel();
        root.cancel();
        tasks.close();
        tasks.wait().await;
    };
    match tokio::time::timeout(SHUTDOWN_LIMIT, stop).await {
        Ok(()) => tracing::info!(
            target: "shoal::lifecycle",
            "stopped on {reason} in {:.2?}",
            started.elapsed()
        ),
        Err(_) => tracing::error!(
            target: "shoal::lifecycle",
            "the agent's parts did not stop within {SHUTDOWN_LIMIT:?} of {reason}; exiting anyway"
        ),
    }
    Ok(())
}

/// rustls needs one process-wide crypto provider; shoal uses ring only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
