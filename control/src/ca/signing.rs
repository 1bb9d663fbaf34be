//! Statements signed with a node's own key (the key of its certificate,
//! ECDSA P-256) and their check against that node's certificate, itself
//! verified against the cluster's root: how gossip proves which node wrote
//! an endpoint record, so that holding the cluster's gossip key is not
//! enough to write another node's records.

use crate::error_chain::ErrorChain;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;

use super::encoding::key_from_pem;
use super::identity::peer_identity;
use super::tls::{provider, root_store};
use super::CaError;

/// Names a node key: the first 8 bytes of the SHA-256 of its public key.
pub type KeyId = [u8; 8];

/// Length of a signature (P-256, r and s of 32 bytes each).
pub const SIGNATURE_LEN: usize = 64;

/// The [`KeyId`] of a public key (an uncompressed P-256 point).
pub fn key_id(public_key: &[u8]) -> KeyId {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(digest.as_ref().get(..8).unwrap_or(&[0; 8]));
    id
}

/// Signs with this node's private key.
pub struct NodeSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    key_id: KeyId,
}

impl fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl NodeSigner {
    /// The signer of a node key (PKCS#8 PEM, ECDSA P-256).
    pub fn from_key_pem(key_pem: &str) -> Result<NodeSigner, CaError> {
        let PrivateKeyDer::Pkcs8(pkcs8) = key_from_pem(key_pem)? else {
            return Err(CaError::InvalidPem {
                what: "node key PEM",
                reason: "not a PKCS#8 key".into(),
            });
        };
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| CaError::InvalidPem {
            what: "node key PEM",
            reason: format!("not an ECDSA P-256 key: {e}"),
        })?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(NodeSigner { pair, rng, key_id })
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// A [`SIGNATURE_LEN`]-byte signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| CaError::Random)
    }
}

/// A node's public key, as its certificate (verified against the cluster's
/// root) binds it to the node id.
#[derive(Clone)]
pub struct CertifiedKey {
    pub node_id: String,
    pub key_id: KeyId,
    public_key: Vec<u8>,
    /// Unix milliseconds after which the certificate, and signatures checked
    /// with it, are no longer accepted.
    pub not_after_ms: u64,
    /// The certificate (DER), to hand on to other nodes.
    pub certificate: Vec<u8>,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("node_id", &self.node_id)
            .field("key_id", &self.key_id)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key)
                .verify(message, signature)
                .is_ok()
    }
}

/// Checks node certificates against the cluster's root, as TLS does.
#[derive(Clone)]
pub struct CertChecker {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for CertChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertChecker").finish_non_exhaustive()
    }
}

impl CertChecker {
    /// A checker that trusts only the root `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<CertChecker, CaError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(root_store(ca_pem)?, provider())
            .build()
            .map_err(|e| CaError::Tls(format!("certificate verifier: {}", e.chain())))?;
        Ok(CertChecker { verifier })
    }

    /// The key a node certificate (DER) certifies, if this cluster's root
    /// signed it and it is valid at `now`.
    pub fn check(&self, certificate: &[u8], now: SystemTime) -> Result<CertifiedKey, CaError> {
        let der = CertificateDer::from(certificate);
        let secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        self.verifier
            .verify_client_cert(
                &der,
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            )
            .map_err(|e| {
                CaError::InvalidCertificate(format!("not from this cluster's CA: {}", e.chain()))
            })?;
        let identity = peer_identity(certificate)?;
        let (_, cert) = x509_parser::parse_x509_certificate(certificate).map_err(|e| {
            CaError::InvalidCertificate(format!("not an X.509 certificate: {}", e.chain()))
        })?;
        let public_key = cert.public_key().subject_public_key.data.to_vec();
        let not_after_ms = identity
            .not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(CertifiedKey {
            node_id: identity.node_id,
            key_id: key_id(&public_key),
            public_key,
            not_after_ms,
            certificate: certificate.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::encoding::cert_from_pem;
    use crate::ca::RootCa;
    use crate::objects::Role;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn a_signature_checks_out_only_against_its_own_certificate() {
        let ca = RootCa::generate("c1").unwrap();
        let checker = CertChecker::new(ca.cert_pem()).unwrap();
        let (key_a, cert_a) = ca.issue("nodea", Role::Worker, "c1", DAY).unwrap();
        let (_, cert_b) = ca.issue("nodeb", Role::Worker, "c1", DAY).unwrap();
        let der = |pem: &str| cert_from_pem(pem, "test").unwrap().to_vec();
        let now = SystemTime::now();
        let a = checker.check(&der(&cert_a), now).unwrap();
        let b = checker.check(&der(&cert_b), now).unwrap();
        assert_eq!(a.node_id, "nodea");
        let signer = NodeSigner::from_key_pem(&key_a).unwrap();
        assert_eq!(signer.key_id(), a.key_id);
        assert_ne!(a.key_id, b.key_id);
        let sig = signer.sign(b"record").unwrap();
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert!(a.verify(b"record", &sig));
        assert!(!a.verify(b"recorc", &sig));
        assert!(!b.verify(b"record", &sig));
        assert!(!a.verify(b"record", &sig[..63]));
    }

    #[test]
    fn certificates_of_another_root_or_expired_are_refused() {
        let ca = RootCa::generate("c1").unwrap();
        let other = RootCa::generate("c1").unwrap();
        let checker = CertChecker::new(ca.cert_pem()).unwrap();
        let (_, foreign) = other.issue("nodea", Role::Manager, "c1", DAY).unwrap();
        let foreign = cert_from_pem(&foreign, "test").unwrap().to_vec();
        let err = checker.check(&foreign, SystemTime::now()).unwrap_err();
        assert!(err.to_string().contains("CA"), "{err}");
        let (_, short) = ca.issue("nodea", Role::Manager, "c1", DAY).unwrap();
        let short = cert_from_pem(&short, "test").unwrap().to_vec();
        assert!(checker.check(&short, SystemTime::now()).is_ok());
        assert!(checker.check(&short, SystemTime::now() + 2 * DAY).is_err());
        assert!(checker.check(b"junk", SystemTime::now()).is_err());
        let root = cert_from_pem(ca.cert_pem(), "test").unwrap().to_vec();
        assert!(checker.check(&root, SystemTime::now()).is_err());
    }
}
