//! The agent's Unix-socket API for the CLI: the same `Control.Call` method
//! as on port 2377, carrying [`LocalRequest`]s and answering
//! `LocalAnswer`s. Access is the socket file's (root only, mode 0600), as
//! with dockerd; the `Images` service (`shoal image ...`, see
//! [`super::images`]) is served beside it with the same access. At shutdown it stops accepting (the socket file goes
//! first, then the connections already waiting are taken) and finishes the
//! requests in flight.

use shoal_control::error_chain::ErrorChain;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::Stream;
use shoal_control::api::LocalRequest;
use shoal_control::proto::control::control_server::{Control, ControlServer};
use shoal_control::proto::control::Json;
use shoal_control::proto::images::images_server::ImagesServer;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::images::ImagesApi;
use super::peers::{from_json, to_json};
use super::Agent;

/// How long the server waits for a last connection once the socket file is
/// gone: clients that connected just before are served, not reset.
const LAST_CONNECTIONS: Duration = Duration::from_millis(100);

struct LocalApi(Arc<Agent>);

#[tonic::async_trait]
impl Control for LocalApi {
    async fn call(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let request: LocalRequest = from_json(&req.into_inner().json)?;
        let answer = self.0.handle_local(request).await?;
        Ok(Response::new(Json {
            json: to_json(&answer)?,
        }))
    }
}

/// Serves `agent` on `socket` as a task of `tasks` until `stop`; the
/// returned handle ends once the requests in flight are answered.
pub async fn serve(
    agent: Arc<Agent>,
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
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let incoming = accept_until(listener, socket.to_path_buf(), stop);
    let router = tonic::transport::Server::builder()
        .add_service(ControlServer::new(LocalApi(agent.clone())))
        .add_service(ImagesServer::new(ImagesApi(agent)));
    Ok(tasks.spawn(async move {
        // The stream ends on `stop`; the server then drains its connections.
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, std::future::pending())
            .await
        {
            tracing::error!("local API stopped: {}", e.chain());
        }
    }))
}

/// The connections to `listener` until `stop`; then the socket file is
/// removed, so no new client finds it, and the ones already waiting are
/// still taken.
fn accept_until(
    listener: UnixListener,
    socket: PathBuf,
    stop: CancellationToken,
) -> impl Stream<Item = std::io::Result<UnixStream>> {
    futures::stream::unfold(
        (listener, socket, stop, false),
        |(listener, socket, stop, stopping)| async move {
            if !stopping {
                tokio::select! {
                    conn = listener.accept() => {
                        return Some((conn.map(|(s, _)| s), (listener, socket, stop, false)));
                    }
                    _ = stop.cancelled() => {
                        if let Err(e) = std::fs::remove_file(&socket) {
                            tracing::debug!("removing {}: {e}", socket.display());
                        }
                    }
                }
            }
            match tokio::time::timeout(LAST_CONNECTIONS, listener.accept()).await {
                Ok(conn) => Some((conn.map(|(s, _)| s), (listener, socket, stop, true))),
                Err(_) => None,
            }
        },
    )
}
