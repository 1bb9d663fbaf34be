//! The Docker Engine API's swarm subset (v1.41, with version negotiation)
//! on a Unix socket, so the real `docker` CLI drives shoal unchanged:
//! `/_ping`, `/version`, `/info`, `/swarm`, `/nodes`, `/services` (with
//! logs), `/tasks`, `/networks`, `/secrets`, `/configs`, `/distribution`,
//! and this node's `/volumes`.
//!
//! Every request becomes the same typed [`LocalRequest`] shoal's own CLI
//! sends, answered by the agent through [`Backend`]; Docker's JSON comes
//! from `shoal_control::engine`. The socket is the agent's door like
//! `shoal.sock`: root only (0660, root's group), and the caller gets what
//! the local CLI gets. This part never decides anything about the cluster
//! and never touches the kernel: it translates.

mod cluster;
mod distribution;
mod http;
mod logs;
mod payloads;
mod services;
mod system;
mod volumes;

use shoal_control::error_chain::ErrorChain;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use futures::future::BoxFuture;
use shoal_control::api::{Answer as Payload, ApiRequest, ApiResponse, LocalRequest};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::ContainerRuntime;
use crate::image::ImageStore;

pub use http::{Refusal, RefusalKind};

/// What this node is, for `GET /info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// In no swarm.
    Inactive,
    /// An autolocked manager waiting for its key.
    Locked,
    Worker,
    Manager,
}

/// The agent, as the API server sees it.
pub trait Backend: Send + Sync + 'static {
    /// Answers a request as the local socket does.
    fn call(&self, request: LocalRequest) -> BoxFuture<'_, Result<ApiResponse, Refusal>>;
    /// What this node is now.
    fn node_state(&self) -> NodeState;
    /// This node's image store (`/distribution`): there once the node is
    /// in a swarm and runs containers.
    fn images(&self) -> Option<Arc<ImageStore>>;
    /// This node's container runtime (`/volumes`), likewise.
    fn containers(&self) -> Option<Arc<ContainerRuntime>>;
}

/// The handlers' shared state.
#[derive(Clone)]
pub struct Api(Arc<dyn Backend>);

impl Api {
    /// A cluster request whose answer carries `T`.
    async fn ask<T: Payload>(&self, request: ApiRequest) -> Result<T, Refusal> {
        let answer = self.0.call(LocalRequest::Api(request)).await?;
        T::from_response(answer)
            .map_err(|e| Refusal::new(RefusalKind::Internal, e.chain().to_string()))
    }

    /// The node's image store, or Docker's 503 saying why there is none.
    fn images(&self) -> Result<Arc<ImageStore>, Refusal> {
        self.0.images().ok_or_else(|| {
            Refusal::new(
                RefusalKind::Unavailable,
                "this node has no image store: it is not in a swarm yet, or runc is not installed",
            )
        })
    }

    /// The node's container runtime, or Docker's 503 saying why there is
    /// none.
    fn containers(&self) -> Result<Arc<ContainerRuntime>, Refusal> {
        self.0.containers().ok_or_else(|| {
            Refusal::new(
                RefusalKind::Unavailable,
                "this node has no volumes: it is not in a swarm yet, or runc is not installed",
            )
        })
    }

    /// A membership verb; answers what it printed.
    async fn verb(&self, request: LocalRequest) -> Result<String, Refusal> {
        match self.0.call(request).await? {
            ApiResponse::Done { message } => Ok(message),
            other => Err(Refusal::new(
                RefusalKind::Internal,
                format!("the agent answered with {}", other.kind()),
            )),
        }
    }
}

/// Every route, unversioned (the version prefix is stripped first).
pub fn router(backend: Arc<dyn Backend>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(system::swarm_inspect))
        .route("/swarm/init", post(system::swarm_init))
        .route("/swarm/join", post(system::swarm_join))
        .route("/swarm/leave", post(system::swarm_leave))
        .route("/swarm/update", post(system::swarm_update))
        .route("/swarm/unlockkey", get(system::unlock_key))
        .route("/swarm/unlock", post(system::swarm_unlock))
        .route("/nodes", get(cluster::node_list))
        .route(
            "/nodes/{id}",
            get(cluster::node_inspect).delete(cluster::node_remove),
        )
        .route("/nodes/{id}/update", post(cluster::node_update))
        .route("/networks", get(cluster::network_list))
        .route("/networks/create", post(cluster::network_create))
        .route(
            "/networks/{id}",
            get(cluster::network_inspect).delete(cluster::network_remove),
        )
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks", get(services::task_list))
        .route("/tasks/{id}", get(services::task_inspect))
        .route("/distribution/{*name}", get(distribution::distribution))
        .route("/volumes", get(volumes::list))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/secrets", get(payloads::secret_list))
        .route("/secrets/create", post(payloads::secret_create))
        .route(
            "/secrets/{id}",
            get(payloads::secret_inspect).delete(payloads::secret_remove),
        )
        .route("/secrets/{id}/update", post(payloads::secret_update))
        .route("/configs", get(payloads::config_list))
        .route("/configs/create", post(payloads::config_create))
        .route(
            "/configs/{id}",
            get(payloads::config_inspect).delete(payloads::config_remove),
        )
        .route("/configs/{id}/update", post(payloads::config_update))
        .fallback(system::unknown)
        .layer(axum::middleware::map_response(http::server_headers))
        .with_state(Api(backend))
}

/// Serves `backend` on `socket` (mode 0660) as a task of `tasks` until
/// `stop`; the returned handle ends once the requests in flight are
/// answered.
pub async fn serve(
    backend: Arc<dyn Backend>,
    socket: &Path,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e)
                .with_context(|| format!("cannot replace stale socket {}", socket.display()))
        }
        _ => {}
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    let app = tower::Layer::layer(
        &axum::middleware::map_request(http::strip_version),
        router(backend),
    );
    let path = socket.to_path_buf();
    Ok(tasks.spawn(async move {
        let served = axum::serve(listener, axum::ServiceExt::into_make_service(app))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("Docker API on {} stopped: {}", path.display(), e.chain());
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::debug!("removing {}: {e}", path.display());
        }
    }))
}
