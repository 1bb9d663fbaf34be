//! The agent's Unix-socket API for the CLI: the same `Control.Call` method
//! as on port 2377, carrying `LocalRequest`s. Access is the socket file's
//! (root only, mode 0600), as with dockerd.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use shoal_control::api::LocalRequest;
use shoal_control::proto::control::control_server::{Control, ControlServer};
use shoal_control::proto::control::Json;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::peers::{from_json, to_json};
use super::Agent;

struct LocalApi(Arc<Agent>);

#[tonic::async_trait]
impl Control for LocalApi {
    async fn call(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let request: LocalRequest = from_json(&req.into_inner().json)?;
        let reply = self.0.clone().handle_local(request).await?;
        Ok(Response::new(Json {
            json: to_json(&reply)?,
        }))
    }
}

pub async fn serve(agent: Arc<Agent>, socket: &Path) -> anyhow::Result<JoinHandle<()>> {
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
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let router =
        tonic::transport::Server::builder().add_service(ControlServer::new(LocalApi(agent)));
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!("local API stopped: {e}");
        }
    }))
}
