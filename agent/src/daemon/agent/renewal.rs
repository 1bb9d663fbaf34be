//! Certificate renewal: at a random point in 50-80% of the certificate's
//! life (Swarm's rule, so a fleet never renews all at once) the node asks a
//! manager for a certificate with a fresh key, and a manager restarts its
//! API server with it. A failed renewal is retried a second later.

use std::time::Duration;

use rustls::pki_types::{pem::PemObject, CertificateDer};
use shoal_control::api::{RenewRequest, RenewResponse};
use shoal_control::ca::{self, NodeKey};
use tokio_util::sync::CancellationToken;

use super::super::identity::Certs;
use super::super::peers::{from_json, to_json};
use super::super::worker::SessionEvent;
use super::member::{read, Member};
use super::Membership;

/// How soon a failed renewal is tried again (the old certificate is still
/// valid).
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Membership {
    /// Sends `RenewDue` when `cert_pem` is due for renewal; cancel the
    /// returned token to drop the timer.
    pub(super) fn schedule_renewal(&self, cert_pem: &str) -> CancellationToken {
        let wait = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .ok()
            .and_then(|der| ca::peer_identity(der.as_ref()).ok())
            .map(|id| {
                ca::time_until_renewal(
                    id.not_before,
                    id.not_after,
                    std::time::SystemTime::now(),
                    rand::random(),
                )
            });
        let Some(wait) = wait else {
            tracing::error!("cannot read this node's certificate dates; it will not be renewed");
            return CancellationToken::new();
        };
        self.renew_after(wait)
    }

    fn renew_after(&self, wait: Duration) -> CancellationToken {
        let cancel = self.stop.child_token();
        let (events, timer) = (self.events.clone(), cancel.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                _ = timer.cancelled() => {}
                _ = tokio::time::sleep(wait) => {
                    let _ = events.send(SessionEvent::RenewDue).await;
                }
            }
        });
        cancel
    }

    /// The scheduled renewal: a new key and certificate, then the next
    /// timer.
    pub(super) async fn renew(&mut self) -> anyhow::Result<()> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let result = renew_certificate(&self.state, member).await;
        let next = match &result {
            Ok(_) => self.schedule_renewal(&read(&member.certs).cert_pem),
            Err(_) => self.renew_after(RETRY_AFTER),
        };
        let Some(member) = self.member.as_mut() else {
            return Ok(());
        };
        std::mem::replace(&mut member.renewal, next).cancel();
        result?;
        if let Some(role) = member.manager.as_mut() {
            role.restart_server().await?;
        }
        tracing::info!("certificate renewed");
        Ok(())
    }
}

/// Asks a manager for a certificate with a fresh key; installs it.
pub(super) async fn renew_certificate(
    state: &super::super::identity::StateDir,
    member: &Member,
) -> anyhow::Result<RenewResponse> {
    let id = read(&member.identity);
    let NodeKey { key_pem, csr_pem } = NodeKey::generate()?;
    let json = to_json(&RenewRequest { csr_pem })?;
    let mut reply = None;
    for addr in &id.managers {
        if let Ok(r) = member.peers.ca_renew(addr, json.clone()).await {
            reply = Some(r);
            break;
        }
    }
    let resp: RenewResponse =
        from_json(&reply.ok_or_else(|| anyhow::anyhow!("no manager renewed the certificate"))?)?;
    let certs = Certs {
        ca_pem: read(&member.certs).ca_pem,
        cert_pem: resp.cert_pem.clone(),
        key_pem,
    };
    state.save_certs(&certs, member.kek.as_ref())?;
    *member
        .certs
        .write()
        .map_err(|_| anyhow::anyhow!("cert lock poisoned"))? = certs;
    member.peers.reset();
    Ok(resp)
}
