//! Real mutual-TLS handshakes on 127.0.0.1 with tokio-rustls: which peers the
//! TLS layer lets through, what `authorize` then decides, and CA pinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::Code;

use super::encoding::{cert_from_pem, certs_from_pem, key_from_pem};
use super::tls::{manager_server_name, provider, rustls_client_config, rustls_server_config};
use super::*;
use crate::objects::Role;

const DAY: Duration = Duration::from_secs(86400);

/// What the test server saw of one connection: the client's chain (`None`
/// without a client certificate), or why the handshake failed.
type Seen = Result<Option<Vec<CertificateDer<'static>>>, String>;

struct Node {
    cert_pem: String,
    key_pem: String,
}

fn node(ca: &RootCa, id: &str, role: Role, validity: Duration) -> Node {
    let (key_pem, cert_pem) = ca.issue(id, role, "cluster1", validity).unwrap();
    Node { cert_pem, key_pem }
}

/// A TLS server that answers "ok" and reports each handshake.
async fn serve(config: Arc<ServerConfig>) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let certs = tls.get_ref().1.peer_certificates().map(|c| c.to_vec());
                        let _ = tx.send(Ok(certs));
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Connects, and returns what the server wrote, or the client-side error.
async fn call(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(config)
        .connect(manager_server_name(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

struct Cluster {
    ca: RootCa,
    manager: Node,
}

impl Cluster {
    fn new() -> Cluster {
        let ca = RootCa::generate("cluster1").unwrap();
        let manager = node(&ca, "m1", Role::Manager, 90 * DAY);
        Cluster { ca, manager }
    }

    async fn serve(&self) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let config = rustls_server_config(
            self.ca.cert_pem(),
            &self.manager.cert_pem,
            &self.manager.key_pem,
        );
        serve(config.unwrap()).await
    }

    fn client(&self, identity: Option<&Node>) -> Arc<ClientConfig> {
        let identity = identity.map(|n| (n.cert_pem.as_str(), n.key_pem.as_str()));
        rustls_client_config(self.ca.cert_pem(), identity).unwrap()
    }
}

#[tokio::test]
async fn a_worker_certificate_of_this_ca_is_accepted_as_worker() {
    let cluster = Cluster::new();
    let (addr, mut rx) = cluster.serve().await;
    let worker = node(&cluster.ca, "w1", Role::Worker, 90 * DAY);

    assert_eq!(
        call(addr, cluster.client(Some(&worker))).await.unwrap(),
        "ok"
    );
    let chain = seen(&mut rx)
        .await
        .unwrap()
        .expect("the worker sent its certificate");
    let identity = authorize(Some(&chain), Required::Any).unwrap();
    assert_eq!(
        (identity.node_id.as_str(), identity.role),
        ("w1", Role::Worker)
    );
    let refused = authorize(Some(&chain), Required::Manager).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "worker certificates cannot call manager APIs"
    );
}

#[tokio::test]
async fn a_forged_certificate_is_refused_by_the_tls_layer() {
    let cluster = Cluster::new();
    let (addr, mut rx) = cluster.serve().await;
    // Same node id, same role, same cluster id: only the CA differs.
    let forger = RootCa::generate("cluster1").unwrap();
    let forged = node(&forger, "m1", Role::Manager, 90 * DAY);

    assert!(call(addr, cluster.client(Some(&forged))).await.is_err());
    let err = seen(&mut rx).await.unwrap_err();
    // Both roots are named "swarm-ca"/"cluster1", so webpki finds the issuer
    // by name and then the signature does not verify.
    assert!(err.starts_with("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn no_client_certificate_passes_tls_but_authorize_refuses() {
    let cluster = Cluster::new();
    let (addr, mut rx) = cluster.serve().await;

    assert_eq!(call(addr, cluster.client(None)).await.unwrap(), "ok");
    let chain = seen(&mut rx).await.unwrap();
    assert!(chain.is_none());
    let refused = authorize(chain.as_deref(), Required::Any).unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        refused.message(),
        "a certificate from this cluster's CA is required"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let cluster = Cluster::new();
    let (addr, mut rx) = cluster.serve().await;
    let short = node(&cluster.ca, "w2", Role::Worker, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;

    assert!(call(addr, cluster.client(Some(&short))).await.is_err());
    let err = seen(&mut rx).await.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[tokio::test]
async fn clients_refuse_a_manager_of_another_cluster() {
    let ours = Cluster::new();
    let theirs = Cluster::new();
    let (addr, _rx) = theirs.serve().await;
    let worker = node(&ours.ca, "w1", Role::Worker, 90 * DAY);
    let err = call(addr, ours.client(Some(&worker))).await.unwrap_err();
    assert!(err.starts_with("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn a_worker_certificate_cannot_serve_as_a_manager() {
    // A worker's certificate does not carry the name "swarm-manager".
    let cluster = Cluster::new();
    let worker = node(&cluster.ca, "w1", Role::Worker, 90 * DAY);
    let config =
        rustls_server_config(cluster.ca.cert_pem(), &worker.cert_pem, &worker.key_pem).unwrap();
    let (addr, _rx) = serve(config).await;
    let err = call(addr, cluster.client(None)).await.unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("name"),
        "{err}"
    );
}

#[tokio::test]
async fn fetch_root_ca_pins_the_digest() {
    let cluster = Cluster::new();
    let (addr, _rx) = cluster.serve().await;

    let root = fetch_root_ca(addr, &cluster.ca.digest()).await.unwrap();
    assert_eq!(ca_digest(&root).unwrap(), cluster.ca.digest());
    assert_eq!(
        cert_from_pem(&root, "t").unwrap(),
        cert_from_pem(cluster.ca.cert_pem(), "t").unwrap()
    );

    let other = RootCa::generate("cluster1").unwrap();
    let err = fetch_root_ca(addr, &other.digest()).await.unwrap_err();
    assert!(matches!(err, CaError::DigestMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "the join token's CA digest does not match the manager's CA: wrong cluster or forged manager"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn fetch_root_ca_refuses_a_forged_manager_that_replays_the_real_root() {
    // The forger sends the real root (so the digest matches) after a leaf of
    // its own CA: the leaf does not chain to the pinned root.
    let cluster = Cluster::new();
    let forger = RootCa::generate("cluster1").unwrap();
    let fake = node(&forger, "m1", Role::Manager, 90 * DAY);
    let mut chain = certs_from_pem(&fake.cert_pem, "t").unwrap();
    chain.push(cert_from_pem(cluster.ca.cert_pem(), "t").unwrap());
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key_from_pem(&fake.key_pem).unwrap())
        .unwrap();
    let (addr, _rx) = serve(Arc::new(config)).await;

    let err = fetch_root_ca(addr, &cluster.ca.digest()).await.unwrap_err();
    assert!(matches!(err, CaError::UntrustedManager { .. }), "{err:?}");
}

#[tokio::test]
async fn fetch_root_ca_needs_the_root_in_the_chain_and_a_listener() {
    let cluster = Cluster::new();
    let leaf_only = certs_from_pem(&cluster.manager.cert_pem, "t").unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf_only, key_from_pem(&cluster.manager.key_pem).unwrap())
        .unwrap();
    let (addr, _rx) = serve(Arc::new(config)).await;
    let err = fetch_root_ca(addr, &cluster.ca.digest()).await.unwrap_err();
    assert!(matches!(err, CaError::NoRootInChain { .. }), "{err:?}");

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = fetch_root_ca(closed, &cluster.ca.digest())
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("could not reach the manager"),
        "{err}"
    );
}
