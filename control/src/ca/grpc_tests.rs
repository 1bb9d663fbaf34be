//! The tonic configs end to end: a real gRPC server on 127.0.0.1 built from
//! `tls::server_config`, called through `tls::client_config`, with each RPC
//! guarded by `authorize_request` as the real services are.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

use super::tls::{client_config, server_config};
use super::*;
use crate::objects::Role;
use crate::proto::control::control_client::ControlClient;
use crate::proto::control::control_server::{Control, ControlServer};
use crate::proto::control::dispatcher_client::DispatcherClient;
use crate::proto::control::dispatcher_server::{Dispatcher, DispatcherServer};
use crate::proto::control::Json;

const DAY: Duration = Duration::from_secs(86400);

/// Answers with the caller's node id and role, after the real checks.
struct Guarded;

fn who(identity: PeerIdentity) -> Response<Json> {
    Response::new(Json {
        json: format!("{} {}", identity.node_id, identity.role),
    })
}

#[tonic::async_trait]
impl Dispatcher for Guarded {
    async fn heartbeat(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        authorize_request(&request, Required::Any).map(who)
    }
}

#[tonic::async_trait]
impl Control for Guarded {
    async fn call(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        authorize_request(&request, Required::Manager).map(who)
    }
}

struct Manager {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_manager(ca: &RootCa) -> Manager {
    let (key, cert) = ca.issue("m1", Role::Manager, "cluster1", 90 * DAY).unwrap();
    let tls = server_config(ca.cert_pem(), &cert, &key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(DispatcherServer::new(Guarded))
        .add_service(ControlServer::new(Guarded));
    tokio::spawn(
        router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped.await;
        }),
    );
    Manager { addr, _stop: stop }
}

async fn channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(client_config(ca_pem, identity).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn ping() -> Json {
    Json { json: "{}".into() }
}

#[tokio::test]
async fn grpc_roles_are_enforced_per_rpc() {
    let ca = RootCa::generate("cluster1").unwrap();
    let manager = start_manager(&ca).await;
    let (wkey, wcert) = ca.issue("w1", Role::Worker, "cluster1", 90 * DAY).unwrap();
    let (mkey, mcert) = ca.issue("m2", Role::Manager, "cluster1", 90 * DAY).unwrap();

    // A worker may heartbeat but not call manager APIs.
    let worker = channel(manager.addr, ca.cert_pem(), Some((&wcert, &wkey)))
        .await
        .unwrap();
    let reply = DispatcherClient::new(worker.clone())
        .heartbeat(ping())
        .await
        .unwrap();
    assert_eq!(reply.into_inner().json, "w1 worker");
    let refused = ControlClient::new(worker).call(ping()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "worker certificates cannot call manager APIs"
    );

    // A manager may do both.
    let other = channel(manager.addr, ca.cert_pem(), Some((&mcert, &mkey)))
        .await
        .unwrap();
    let reply = ControlClient::new(other).call(ping()).await.unwrap();
    assert_eq!(reply.into_inner().json, "m2 manager");

    // No certificate: the connection is up, every guarded RPC says why not.
    let anonymous = channel(manager.addr, ca.cert_pem(), None).await.unwrap();
    let refused = DispatcherClient::new(anonymous)
        .heartbeat(ping())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        refused.message(),
        "a certificate from this cluster's CA is required"
    );
}

#[tokio::test]
async fn grpc_refuses_a_forged_certificate() {
    let ca = RootCa::generate("cluster1").unwrap();
    let manager = start_manager(&ca).await;
    let forger = RootCa::generate("cluster1").unwrap();
    let (key, cert) = forger
        .issue("m1", Role::Manager, "cluster1", 90 * DAY)
        .unwrap();

    // Depending on timing the refusal surfaces at connect or at the first RPC;
    // either way no RPC succeeds.
    if let Ok(channel) = channel(manager.addr, ca.cert_pem(), Some((&cert, &key))).await {
        let err = ControlClient::new(channel).call(ping()).await.unwrap_err();
        // Refused by TLS (a transport error), not by `authorize`.
        assert!(
            matches!(err.code(), Code::Unavailable | Code::Unknown),
            "{err}"
        );
        assert!(format!("{err:?}").contains("alert"), "{err:?}");
    }
}

#[tokio::test]
async fn grpc_clients_refuse_a_manager_of_another_cluster() {
    let ca = RootCa::generate("cluster1").unwrap();
    let theirs = RootCa::generate("cluster2").unwrap();
    let manager = start_manager(&theirs).await;
    let err = channel(manager.addr, ca.cert_pem(), None)
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn fetch_root_ca_works_against_the_grpc_port() {
    let ca = RootCa::generate("cluster1").unwrap();
    let manager = start_manager(&ca).await;
    let root = fetch_root_ca(manager.addr, &ca.digest()).await.unwrap();
    assert_eq!(ca_digest(&root).unwrap(), ca.digest());
    // The fetched root is enough to then call the port without a certificate.
    let anonymous = channel(manager.addr, &root, None).await.unwrap();
    let refused = DispatcherClient::new(anonymous)
        .heartbeat(ping())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}
