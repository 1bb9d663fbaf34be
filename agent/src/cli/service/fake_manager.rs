//! A scripted stand-in for the local agent, for testing the service verbs
//! end to end over a real Unix socket: it records every request and answers
//! from a closure given the request and how many came before it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shoal_control::api::{ApiRequest, ApiResponse, LocalRequest};
use shoal_control::proto::control::control_server::{Control, ControlServer};
use shoal_control::proto::control::Json;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::daemon::LocalAnswer;

type Script = dyn Fn(&ApiRequest, &[ApiRequest]) -> Result<ApiResponse, String> + Send + Sync;

struct Scripted {
    script: Box<Script>,
    seen: Arc<Mutex<Vec<ApiRequest>>>,
}

#[tonic::async_trait]
impl Control for Scripted {
    async fn call(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        let request: LocalRequest = serde_json::from_str(&request.into_inner().json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let LocalRequest::Api(request) = request else {
            return Err(Status::unimplemented("only API requests"));
        };
        let reply = {
            let mut seen = self.seen.lock().map_err(|_| Status::internal("poisoned"))?;
            let reply = (self.script)(&request, &seen);
            seen.push(request);
            reply
        };
        let reply = LocalAnswer::Cluster(reply.map_err(Status::failed_precondition)?);
        let json = serde_json::to_string(&reply).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Json { json }))
    }
}

/// A fake agent listening on a socket of its own until dropped.
pub struct FakeManager {
    pub socket: PathBuf,
    seen: Arc<Mutex<Vec<ApiRequest>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeManager {
    pub async fn start(
        name: &str,
        script: impl Fn(&ApiRequest, &[ApiRequest]) -> Result<ApiResponse, String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let socket =
            std::env::temp_dir().join(format!("shoal-cli-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the test socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = ControlServer::new(Scripted {
            script: Box::new(script),
            seen: seen.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        FakeManager {
            socket,
            seen,
            _stop: stop,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}
