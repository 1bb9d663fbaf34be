//! TLS configurations for port 2377 (tonic) and any other TCP port (rustls):
//! servers present their certificate plus the root, accept client
//! certificates of this cluster's root only, and let certificate-less clients
//! through the handshake so that joining nodes can call `Ca.Join`; each RPC
//! then decides with [`super::authorize`]. Clients check the server name
//! "swarm-manager" against this cluster's root. The crypto is always ring's.

use crate::error_chain::ErrorChain;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::encoding::{cert_from_pem, cert_to_pem, certs_from_pem, key_from_pem};
use super::{CaError, MANAGER_SERVER_NAME};

/// The crypto provider of every TLS endpoint in shoal: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The name clients verify on managers: "swarm-manager".
pub fn manager_server_name() -> ServerName<'static> {
    // A constant, not input: a unit test covers it.
    #[allow(clippy::expect_used)]
    ServerName::try_from(MANAGER_SERVER_NAME).expect("\"swarm-manager\" is a valid DNS name")
}

/// The tonic server config of port 2377: identity = `cert_pem` followed by
/// the root (so that joining clients can see the root and pin it), client CA
/// = the root, client certificates optional.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ServerTlsConfig, CaError> {
    // Parse everything now so that a bad file fails here, with a clear error,
    // and not later inside the server.
    let chain = server_chain(ca_pem, cert_pem)?;
    key_from_pem(key_pem)?;
    let chain_pem: String = chain.iter().map(|c| cert_to_pem(c)).collect();
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(chain_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(true))
}

/// The tonic client config for a manager's port 2377: trusts only the root
/// `ca_pem`, checks the name "swarm-manager", and presents `identity`
/// (`(cert_pem, key_pem)`) when the node has a certificate.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<ClientTlsConfig, CaError> {
    cert_from_pem(ca_pem, "CA certificate PEM")?;
    let mut config = ClientTlsConfig::new()
        .domain_name(MANAGER_SERVER_NAME)
        .ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert_pem, key_pem)) = identity {
        certs_from_pem(cert_pem, "node certificate PEM")?;
        key_from_pem(key_pem)?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}

/// The same server policy as [`server_config`], as a plain rustls config
/// (no ALPN), for TCP ports that do not speak gRPC.
pub fn rustls_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, CaError> {
    let provider = provider();
    let chain = server_chain(ca_pem, cert_pem)?;
    let key = key_from_pem(key_pem)?;
    let roots = root_store(ca_pem)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| CaError::Tls(format!("client verifier: {}", e.chain())))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.chain().to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| CaError::Tls(format!("server certificate and key: {}", e.chain())))?;
    Ok(Arc::new(config))
}

/// The same client policy as [`client_config`], as a plain rustls config.
/// Connect with [`manager_server_name`].
pub fn rustls_client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, CaError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.chain().to_string()))?
        .with_root_certificates(root_store(ca_pem)?);
    let config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain = certs_from_pem(cert_pem, "node certificate PEM")?;
            builder
                .with_client_auth_cert(chain, key_from_pem(key_pem)?)
                .map_err(|e| CaError::Tls(format!("client certificate and key: {}", e.chain())))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A trust store holding only the cluster's root.
pub(crate) fn root_store(ca_pem: &str) -> Result<Arc<RootCertStore>, CaError> {
    root_store_der(cert_from_pem(ca_pem, "CA certificate PEM")?)
}

pub(crate) fn root_store_der(ca: CertificateDer<'_>) -> Result<Arc<RootCertStore>, CaError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| {
        CaError::Tls(format!(
            "the CA certificate cannot be a trust anchor: {}",
            e.chain()
        ))
    })?;
    Ok(Arc::new(roots))
}

/// The node's certificate chain with the root appended, unless it is there.
fn server_chain(ca_pem: &str, cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let root = cert_from_pem(ca_pem, "CA certificate PEM")?;
    let mut chain = certs_from_pem(cert_pem, "node certificate PEM")?;
    if chain.last() != Some(&root) {
        chain.push(root);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::RootCa;
    use crate::objects::Role;

    #[test]
    fn manager_server_name_is_swarm_manager() {
        assert_eq!(manager_server_name().to_str(), "swarm-manager");
    }

    #[test]
    fn configs_refuse_bad_pem_with_clear_errors() {
        let ca = RootCa::generate("c").unwrap();
        let (key, cert) = ca
            .issue("m1", Role::Manager, "c", std::time::Duration::from_secs(60))
            .unwrap();
        assert!(server_config(ca.cert_pem(), &cert, &key).is_ok());
        assert!(rustls_server_config(ca.cert_pem(), &cert, &key).is_ok());
        assert!(client_config(ca.cert_pem(), Some((&cert, &key))).is_ok());
        let err = server_config("nope", &cert, &key).unwrap_err().to_string();
        assert!(err.contains("CA certificate PEM"), "{err}");
        let err = server_config(ca.cert_pem(), &cert, "nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        let err = client_config(ca.cert_pem(), Some(("nope", &key)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node certificate PEM"), "{err}");
        // A key that is not the certificate's.
        let (other_key, _) = ca
            .issue("m2", Role::Manager, "c", std::time::Duration::from_secs(60))
            .unwrap();
        assert!(rustls_server_config(ca.cert_pem(), &cert, &other_key).is_err());
    }
}
