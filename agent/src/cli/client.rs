//! The CLI's connection to its local agent: gRPC over the agent's Unix socket
//! (`-H unix://PATH`, `SHOAL_HOST`, or `<run-dir>/shoal.sock`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hyper_util::rt::TokioIo;
use shoal_control::api::{Answer, ApiRequest, Done, LocalRequest};
use shoal_control::manager::{ErrorCode, ManagerError};
use shoal_control::proto::control::control_client::ControlClient;
use shoal_control::proto::control::Json;
use shoal_control::proto::status::ERROR_CODE_KEY;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::daemon::LocalAnswer;

/// Resolves `-H`: `unix:///path` or a bare path; default in the run dir.
pub fn socket_path(host: Option<&str>, run_dir: &Path) -> anyhow::Result<PathBuf> {
    match host {
        None => Ok(run_dir.join("shoal.sock")),
        Some(h) if h.starts_with("unix://") => Ok(PathBuf::from(&h["unix://".len()..])),
        Some(h) if h.starts_with('/') => Ok(PathBuf::from(h)),
        Some(h) => bail!("unsupported host `{h}`: use unix:///path/to/shoal.sock"),
    }
}

/// Opens a channel to the agent at `socket`.
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| {
            format!(
                "cannot reach the shoal agent at {}: is `shoal agent` running?",
                socket.display()
            )
        })
}

/// Sends one request to the local agent and returns its answer.
pub async fn call(socket: &Path, request: &LocalRequest) -> anyhow::Result<LocalAnswer> {
    let channel = connect(socket).await?;
    let json = serde_json::to_string(request)?;
    let reply = ControlClient::new(channel)
        .call(Json { json })
        .await
        .map_err(|status| refusal(&status))?;
    serde_json::from_str(&reply.into_inner().json).context("the agent sent an unreadable answer")
}

/// A refusal as the agent sent it: its message, typed with the agent's
/// error code when it sent one (so a caller tells "not found" by
/// [`is_not_found`], never by the words).
fn refusal(status: &tonic::Status) -> anyhow::Error {
    let code = status
        .metadata()
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorCode::parse);
    match code {
        Some(code) => ManagerError::Remote {
            code,
            message: status.message().to_string(),
        }
        .into(),
        None => anyhow::anyhow!("{}", status.message()),
    }
}

/// Whether the agent refused because the object named does not exist.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ManagerError>()
        .is_some_and(|e| e.code() == ErrorCode::NotFound)
}

/// A cluster request, answered with the payload `T` it gets.
pub async fn api<T: Answer>(socket: &Path, request: ApiRequest) -> anyhow::Result<T> {
    let answer = call(socket, &LocalRequest::Api(request)).await?;
    Ok(T::from_response(answer.into_cluster()?)?)
}

/// A request answered with what to print (`Done`).
pub async fn done(socket: &Path, request: &LocalRequest) -> anyhow::Result<String> {
    let answer = call(socket, request).await?;
    Ok(Done::from_response(answer.into_cluster()?)?.message)
}
