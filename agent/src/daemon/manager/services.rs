//! The manager API server on port 2377: Control, Ca, Dispatcher and the Raft
//! transport on one mutual-TLS listener. TLS accepts clients without a
//! certificate (joining nodes have none yet); every method then decides:
//! `Ca.Join` needs only a valid token, everything else a certificate of this
//! cluster, and manager APIs a manager certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_control::api::ApiRequest;
use shoal_control::ca::{tls, PeerIdentity};
use shoal_control::objects::Role;
use shoal_control::proto::control::ca_server::{Ca, CaServer};
use shoal_control::proto::control::control_server::{Control, ControlServer};
use shoal_control::proto::control::dispatcher_server::{Dispatcher, DispatcherServer};
use shoal_control::proto::control::Json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

use super::super::peers::{from_json, to_json, Peers};
use super::api::identity_of;
use super::ManagerCtx;

/// The caller's identity from its client certificate, if it sent one that
/// chains to this cluster's CA (TLS already verified the chain).
fn caller<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a certificate from this cluster's CA is required")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated("a certificate from this cluster's CA is required")
    })?;
    identity_of(leaf.as_ref())
}

#[derive(Clone)]
struct Api(Arc<ManagerCtx>);

#[tonic::async_trait]
impl Control for Api {
    async fn call(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        let request: ApiRequest = from_json(&req.into_inner().json)?;
        if who.role != Role::Manager && !request.workers_allowed() {
            return Err(Status::permission_denied(
                "worker certificates cannot call manager APIs",
            ));
        }
        let reply = self.0.handle(request).await?;
        Ok(Response::new(Json {
            json: to_json(&reply)?,
        }))
    }
}

#[tonic::async_trait]
impl Ca for Api {
    async fn join(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        Ok(Response::new(Json {
            json: self.0.join(&req.into_inner().json).await?,
        }))
    }

    async fn renew(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(Json {
            json: self.0.renew(&who, &req.into_inner().json)?,
        }))
    }
}

#[tonic::async_trait]
impl Dispatcher for Api {
    async fn heartbeat(&self, req: Request<Json>) -> Result<Response<Json>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(Json {
            json: self.0.heartbeat(&who, &req.into_inner().json).await?,
        }))
    }
}

/// Binds `listen` and serves until `stop` is cancelled.
pub async fn serve(
    ctx: Arc<ManagerCtx>,
    listen: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let certs = ctx
        .certs
        .read()
        .map_err(|_| anyhow::anyhow!("certificate lock poisoned"))?
        .clone();
    let tls = tls::server_config(&certs.ca_pem, &certs.cert_pem, &certs.key_pem)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for the manager API: {e}"))?;
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
    let api = Api(ctx.clone());
    let router = Server::builder()
        .tls_config(tls)?
        .add_service(ControlServer::new(api.clone()))
        .add_service(CaServer::new(api.clone()))
        .add_service(DispatcherServer::new(api))
        .add_service(shoal_control::raft::service(&ctx.raft));
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled())
            .await
        {
            tracing::error!("manager API server stopped: {e}");
        }
    }))
}

/// Gives the Raft transport mTLS endpoints to the other managers.
pub struct Connector(pub Peers);

impl shoal_control::raft::PeerConnector for Connector {
    fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        self.0.endpoint(addr)
    }
}
