//! CA pinning for `swarm join`: the joining node has no root yet, only the
//! digest in its token. It takes the last certificate of the manager's chain
//! as the root, accepts it only if its digest is the token's, and then
//! verifies (webpki) that the manager's own certificate really chains to it
//! for the name "swarm-manager".

use crate::error_chain::ErrorChain;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::encoding::{cert_to_pem, constant_time_eq};
use super::root::ca_digest_der;
use super::tls::{manager_server_name, provider, root_store_der};
use super::CaError;

/// How long [`fetch_root_ca`] waits for the connection and handshake.
pub const FETCH_ROOT_CA_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to a manager's TLS port and returns its root CA (PEM) if, and
/// only if, its SHA-256 digest is `expected_digest` (the token's) and the
/// manager's certificate is signed by it for "swarm-manager".
pub async fn fetch_root_ca(addr: SocketAddr, expected_digest: &str) -> Result<String, CaError> {
    let provider = provider();
    let verifier = Arc::new(PinningVerifier {
        addr,
        expected_digest: expected_digest.to_owned(),
        provider: provider.clone(),
        outcome: Mutex::new(None),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.chain().to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // Look like the gRPC client that will follow.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));

    let handshake = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| CaError::Connect { addr, source })?;
        let result = connector.connect(manager_server_name(), tcp).await;
        let outcome = verifier.take_outcome();
        match (result, outcome) {
            (Ok(mut stream), Some(Ok(root))) => {
                // Best effort: the root is already verified.
                let _ = stream.shutdown().await;
                Ok(cert_to_pem(&root))
            }
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(CaError::Handshake {
                addr,
                reason: e.chain().to_string(),
            }),
            (Ok(_), None) => Err(CaError::Handshake {
                addr,
                reason: "the server's certificate was never checked".into(),
            }),
        }
    };
    tokio::time::timeout(FETCH_ROOT_CA_TIMEOUT, handshake)
        .await
        .map_err(|_| CaError::Timeout {
            addr,
            secs: FETCH_ROOT_CA_TIMEOUT.as_secs(),
        })?
}

/// Why the verifier refused a chain: the error for the caller, and the one
/// rustls turns into an alert.
type Refusal = Box<(CaError, rustls::Error)>;

/// Accepts the server's chain provisionally, pins its last certificate by
/// digest, then verifies the leaf against it. Records why it refused, so the
/// caller can report the real reason instead of a TLS alert.
#[derive(Debug)]
struct PinningVerifier {
    addr: SocketAddr,
    expected_digest: String,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<Result<CertificateDer<'static>, CaError>>>,
}

impl PinningVerifier {
    fn record(&self, outcome: Result<CertificateDer<'static>, CaError>) {
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
    }

    fn take_outcome(&self) -> Option<Result<CertificateDer<'static>, CaError>> {
        self.outcome.lock().ok().and_then(|mut slot| slot.take())
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<CertificateDer<'static>, Refusal> {
        let addr = self.addr;
        let Some((root, between)) = intermediates.split_last() else {
            return Err(Box::new((
                CaError::NoRootInChain { addr },
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            )));
        };
        let found = ca_digest_der(root);
        if !constant_time_eq(found.as_bytes(), self.expected_digest.as_bytes()) {
            return Err(Box::new((
                CaError::DigestMismatch {
                    expected: self.expected_digest.clone(),
                    found,
                },
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            )));
        }
        let untrusted = |reason: String| {
            Box::new((
                CaError::UntrustedManager { addr, reason },
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            ))
        };
        let roots = root_store_der(root.clone()).map_err(|e| untrusted(e.chain().to_string()))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .build()
            .map_err(|e| untrusted(e.chain().to_string()))?;
        match webpki.verify_server_cert(end_entity, between, server_name, ocsp_response, now) {
            Ok(_) => Ok(root.clone().into_owned()),
            Err(e) => Err(Box::new((
                CaError::UntrustedManager {
                    addr,
                    reason: e.chain().to_string(),
                },
                e,
            ))),
        }
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(root) => {
                self.record(Ok(root));
                Ok(ServerCertVerified::assertion())
            }
            Err(refusal) => {
                let (reason, tls_error) = *refusal;
                self.record(Err(reason));
                Err(tls_error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
