//! `swarm join --token TOKEN MANAGER`: pins the manager's CA by the digest
//! in the token, asks it for a certificate (`Ca.Join`), and starts the
//! parts of the role the token grants.

use shoal_control::error_chain::ErrorChain;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use shoal_control::api::{JoinRequest, JoinResponse};
use shoal_control::ca::{self, JoinToken, NodeKey};
use shoal_control::proto::control::ca_client::CaClient;
use shoal_control::proto::control::Json;
use shoal_control::proto::status::from_status;

use super::super::identity::{Certs, NodeIdentity};
use super::super::peers::{from_json, to_json};
use super::{AgentError, Membership};

/// How long the join call may take (the manager may relay it to the
/// leader).
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Membership {
    pub(super) async fn join(
        &mut self,
        token: &str,
        manager: &str,
        advertise: Option<String>,
        listen_port: u16,
    ) -> Result<String, AgentError> {
        if self.member.is_some() || self.locked.is_some() {
            return Err(AgentError::AlreadyMember);
        }
        let parsed: JoinToken = token.parse()?;
        let manager_addr = if manager.contains(':') {
            manager.to_string()
        } else {
            format!("{manager}:2377")
        };
        let sock = tokio::net::lookup_host(&manager_addr)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| AgentError::BadManagerAddr(manager.to_string()))?;
        let ca_pem = ca::fetch_root_ca(sock, &parsed.digest).await?;
        let addr = match advertise {
            Some(a) => a,
            None => local_ip_towards(sock)
                .await
                .map_err(anyhow::Error::from)?
                .to_string(),
        };
        let NodeKey { key_pem, csr_pem } = NodeKey::generate()?;
        let request = JoinRequest {
            token: token.to_string(),
            csr_pem,
            hostname: self.hostname.clone(),
            addr: addr.clone(),
            listen_port,
        };
        let resp = ask_to_join(&manager_addr, &ca_pem, &request).await?;
        let identity = NodeIdentity {
            node_id: resp.node_id.clone(),
            cluster_id: resp.cluster_id,
            role: resp.role,
            hostname: self.hostname.clone(),
            addr,
            listen_port,
            raft_id: resp.raft_id,
            managers: if resp.managers.is_empty() {
                vec![manager_addr]
            } else {
                resp.managers
            },
            autolock: false,
        };
        let certs = Certs {
            ca_pem: resp.ca_pem,
            cert_pem: resp.cert_pem,
            key_pem,
        };
        self.state
            .save_certs(&certs, None)
            .map_err(anyhow::Error::from)?;
        self.state
            .save_identity(&identity)
            .map_err(anyhow::Error::from)?;
        self.become_member(identity, certs, None, None).await?;
        Ok(format!("This node joined a swarm as a {}.", resp.role))
    }
}

/// `Ca.Join` on the manager at `manager_addr`, trusting only `ca_pem`.
async fn ask_to_join(
    manager_addr: &str,
    ca_pem: &str,
    request: &JoinRequest,
) -> Result<JoinResponse, AgentError> {
    let unreachable = |detail: String| AgentError::Unreachable {
        addr: manager_addr.to_string(),
        detail,
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{manager_addr}"))
        .map_err(|e| unreachable(e.chain().to_string()))?
        .tls_config(ca::tls::client_config(ca_pem, None)?)
        .map_err(|e| unreachable(e.chain().to_string()))?
        .timeout(JOIN_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(e.chain().to_string()))?;
    let json = to_json(request).map_err(|s| from_status(manager_addr, &s))?;
    let reply = CaClient::new(channel)
        .join(Json { json })
        .await
        .map_err(|s| from_status(manager_addr, &s))?;
    Ok(from_json(&reply.into_inner().json).map_err(|s| from_status(manager_addr, &s))?)
}

/// The local address the kernel would use to reach `peer`.
async fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let sock = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await?;
    sock.connect(peer).await?;
    Ok(sock.local_addr()?.ip())
}
