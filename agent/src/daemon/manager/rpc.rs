//! The manager API server on port 2377: Control, Ca, Dispatcher and the Raft
//! transport on one mutual-TLS listener. TLS accepts clients without a
//! certificate (joining nodes have none yet); each method reads the
//! caller's identity from its certificate and hands the call to the manager
//! core, which authorizes it against the store. Nothing is decided here.

use shoal_control::error_chain::ErrorChain;
use std::net::SocketAddr;
use std::sync::Arc;

use shoal_control::api::{ApiRequest, Heartbeat, JoinRequest, RenewRequest};
use shoal_control::ca::{authorize_request, tls, Required};
use shoal_control::manager::Caller;
use shoal_control::proto::control::ca_server::{Ca, CaServer};
use shoal_control::proto::control::control_server::{Control, ControlServer};
use shoal_control::proto::control::dispatcher_server::{Dispatcher, DispatcherServer};
use shoal_control::proto::control::Json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::super::identity::Certs;
use super::super::peers::{from_json, to_json};
use super::Core;

/// The caller's node, from the client certificate TLS verified against this
/// cluster's root.
fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    let who = authorize_request(req, Required::Any)?;
    Ok(Caller::Node {
        node_id: who.node_id,
        role: who.role,
    })
}

#[derive(Clone)]
struct Api(Arc<Core>);

#[tonic::async_trait]
impl Control for Api {
    async fn call(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        let request: ApiRequest = from_json(&req.into_inner().json)?;
        let answer = self.0.handle(&who, request).await?;
        Ok(Response::new(Json {
            json: to_json(&answer)?,
        }))
    }
}

#[tonic::async_trait]
impl Ca for Api {
    async fn join(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let request: JoinRequest = from_json(&req.into_inner().json)?;
        let answer = self.0.join(request).await?;
        Ok(Response::new(Json {
            json: to_json(&answer)?,
        }))
    }

    async fn renew(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        let request: RenewRequest = from_json(&req.into_inner().json)?;
        let answer = self.0.renew(&who, request)?;
        Ok(Response::new(Json {
            json: to_json(&answer)?,
        }))
    }
}

#[tonic::async_trait]
impl Dispatcher for Api {
    async fn heartbeat(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        let heartbeat: Heartbeat = from_json(&req.into_inner().json)?;
        let answer = self.0.heartbeat(&who, heartbeat).await?;
        Ok(Response::new(Json {
            json: to_json(&answer)?,
        }))
    }
}

/// Binds `listen` and serves with `certs` until `stop` is cancelled; then
/// it stops accepting and finishes the calls in flight.
pub async fn serve(
    core: Arc<Core>,
    certs: &Certs,
    listen: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let tls = tls::server_config(&certs.ca_pem, &certs.cert_pem, &certs.key_pem)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen} for the manager API: {}",
            e.chain()
        )
    })?;
    // Small RPCs (heartbeats, Raft appends) must not wait for Nagle: with it
    // one writer gets about a third of the commits per second.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            if let Ok(stream) = &conn {
                let _ = stream.set_nodelay(true);
            }
            conn
        },
    );
    let raft = shoal_control::raft::service(core.store());
    let api = Api(core);
    let router = Server::builder()
        .tls_config(tls)?
        .add_service(ControlServer::new(api.clone()))
        .add_service(CaServer::new(api.clone()))
        // Answers up to the core's bound (requests keep tonic's 4 MiB:
        // they are read before the caller is known).
        .add_service(
            DispatcherServer::new(api)
                .max_encoding_message_size(shoal_control::manager::MAX_HEARTBEAT_MESSAGE_BYTES),
        )
        .add_service(raft);
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
        {
            tracing::error!("manager API server stopped: {}", e.chain());
        }
    }))
}
