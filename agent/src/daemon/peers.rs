//! Connections to other nodes' manager APIs, always over mutual TLS with this
//! node's certificate. Channels are cached per address and connect lazily.

use shoal_control::error_chain::ErrorChain;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use shoal_control::api::ApiResponse;
use shoal_control::ca::tls;
use shoal_control::proto::control::ca_client::CaClient;
use shoal_control::proto::control::control_client::ControlClient;
use shoal_control::proto::control::dispatcher_client::DispatcherClient;
use shoal_control::proto::control::Json;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

use super::identity::Certs;

/// How long one call to another node may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(6);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// mTLS channels to other nodes, rebuilt when the certificates change.
#[derive(Clone)]
pub struct Peers {
    certs: Arc<RwLock<Certs>>,
    tls: Arc<RwLock<Option<ClientTlsConfig>>>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    pub fn new(certs: Arc<RwLock<Certs>>) -> Self {
        Peers {
            certs,
            tls: Arc::default(),
            channels: Arc::default(),
        }
    }

    /// Drops cached channels and TLS settings, after a certificate renewal.
    pub fn reset(&self) {
        if let Ok(mut c) = self.channels.lock() {
            c.clear();
        }
        if let Ok(mut t) = self.tls.write() {
            *t = None;
        }
    }

    /// The client TLS settings for this node's current certificate.
    fn tls(&self) -> Result<ClientTlsConfig, Status> {
        if let Some(cfg) = self.tls.read().ok().and_then(|t| t.clone()) {
            return Ok(cfg);
        }
        let certs = self
            .certs
            .read()
            .map_err(|_| Status::internal("certificate lock poisoned"))?
            .clone();
        let cfg = tls::client_config(&certs.ca_pem, Some((&certs.cert_pem, &certs.key_pem)))
            .map_err(|e| {
                Status::internal(format!(
                    "this node's TLS material is unusable: {}",
                    e.chain()
                ))
            })?;
        if let Ok(mut t) = self.tls.write() {
            *t = Some(cfg.clone());
        }
        Ok(cfg)
    }

    /// An mTLS endpoint for `addr` (`ip:port`), for callers that build their
    /// own channels (the Raft transport).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))?;
        let endpoint = match self.tls() {
            Ok(cfg) => endpoint.tls_config(cfg)?,
            // Without TLS material the connection fails at the handshake,
            // which the caller reports; plaintext is never used.
            Err(e) => {
                tracing::error!("{}", e.message());
                endpoint
            }
        };
        Ok(endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true))
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut cache = self
            .channels
            .lock()
            .map_err(|_| Status::internal("channel cache poisoned"))?;
        if let Some(ch) = cache.get(addr) {
            return Ok(ch.clone());
        }
        self.tls()?;
        let ch = self
            .endpoint(addr)
            .map_err(|e| Status::invalid_argument(format!("bad address {addr}: {}", e.chain())))?
            .connect_lazy();
        cache.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// `Control.Call` on another manager.
    pub async fn call<T: serde::Serialize>(
        &self,
        addr: &str,
        request: &T,
    ) -> Result<ApiResponse, Status> {
        let json = to_json(request)?;
        let reply = ControlClient::new(self.channel(addr)?)
            .call(Json { json })
            .await?;
        from_json(&reply.into_inner().json)
    }

    /// `Ca.Join` on a manager, relayed by a manager for a joining node.
    pub async fn ca_join(&self, addr: &str, json: String) -> Result<String, Status> {
        Ok(CaClient::new(self.channel(addr)?)
            .join(Json { json })
            .await?
            .into_inner()
            .json)
    }

    pub async fn ca_renew(&self, addr: &str, json: String) -> Result<String, Status> {
        Ok(CaClient::new(self.channel(addr)?)
            .renew(Json { json })
            .await?
            .into_inner()
            .json)
    }

    pub async fn heartbeat(&self, addr: &str, json: String) -> Result<String, Status> {
        Ok(DispatcherClient::new(self.channel(addr)?)
            .max_decoding_message_size(shoal_control::manager::MAX_HEARTBEAT_MESSAGE_BYTES)
            .heartbeat(Json { json })
            .await?
            .into_inner()
            .json)
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value).map_err(|e| Status::internal(format!("encoding: {}", e.chain())))
}

pub fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Status> {
    serde_json::from_str(json)
        .map_err(|e| Status::invalid_argument(format!("unreadable message: {}", e.chain())))
}
