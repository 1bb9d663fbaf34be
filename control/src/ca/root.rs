//! The root CA: its generation, its digest (pinned by join tokens), node keys
//! with their signing requests, and the signing of node certificates.
//!
//! The CA decides everything in a node certificate except its public key: the
//! subject a CSR asks for is ignored.

use crate::error_chain::ErrorChain;
use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

use super::encoding::{base36_encode, cert_from_pem, is_base36, random_bytes};
use super::{CaError, MANAGER_SERVER_NAME, WORKER_NAME};
use crate::objects::Role;

/// The root's common name, as in Swarm.
pub const CA_COMMON_NAME: &str = "swarm-ca";
/// The root's lifetime: 20 years.
pub const CA_VALIDITY: Duration = Duration::from_secs((20 * 365 + 5) * 24 * 3600);
/// How far the root's `notBefore` is set in the past, for skewed clocks.
const CA_BACKDATE: Duration = Duration::from_secs(3600);

/// The organizational unit (and DNS name) a role is written as.
pub(crate) fn role_ou(role: Role) -> &'static str {
    match role {
        Role::Manager => MANAGER_SERVER_NAME,
        Role::Worker => WORKER_NAME,
    }
}

/// The cluster's root CA: its certificate and the key that signs node
/// certificates. Only managers hold it.
pub struct RootCa {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl RootCa {
    /// A new self-signed root: ECDSA P-256, CN "swarm-ca", O = `cluster_id`,
    /// valid for 20 years.
    pub fn generate(cluster_id: &str) -> Result<RootCa, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::KeyGeneration(e.chain().to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        if !cluster_id.is_empty() {
            dn.push(DnType::OrganizationName, cluster_id);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CA_BACKDATE;
        params.not_after = add(now, CA_VALIDITY, "root CA")?;
        let cert = params.self_signed(&key).map_err(|e| CaError::Certificate {
            what: "root CA",
            reason: e.chain().to_string(),
        })?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A root loaded back from its certificate and key (as kept in the
    /// `Cluster` object). Fails if the key is not the certificate's or the
    /// certificate is not a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, CaError> {
        let der = cert_from_pem(cert_pem, "root CA certificate PEM")?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| CaError::InvalidPem {
                what: "root CA certificate",
                reason: e.chain().to_string(),
            })?;
        if !cert.is_ca() {
            return Err(CaError::InvalidPem {
                what: "root CA certificate",
                reason: "it is not a CA certificate (no basicConstraints CA:TRUE)".into(),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::InvalidPem {
            what: "root CA key PEM",
            reason: e.chain().to_string(),
        })?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(CaError::InvalidPem {
                what: "root CA key",
                reason: "it does not belong to the root CA certificate".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| CaError::InvalidPem {
            what: "root CA certificate",
            reason: e.chain().to_string(),
        })?;
        Ok(RootCa {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der: der.to_vec(),
            issuer,
        })
    }

    /// The root certificate in PEM (public: every node holds it).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root's private key in PKCS#8 PEM (secret: managers only).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The digest join tokens carry (see [`ca_digest`]).
    pub fn digest(&self) -> String {
        ca_digest_der(&self.cert_der)
    }

    /// Signs a node certificate for the public key in `csr_pem`:
    /// CN = `node_id`, OU = "swarm-manager" or "swarm-worker", O =
    /// `cluster_id`, DNS names = the OU and the node id, valid from now for
    /// `validity` (whole seconds; at least one). Returns the certificate PEM.
    pub fn sign(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: Role,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<String, CaError> {
        if !is_base36(node_id) || node_id.len() > 63 {
            return Err(CaError::InvalidNodeId(node_id.to_owned()));
        }
        if cluster_id.is_empty() {
            return Err(CaError::Certificate {
                what: "node",
                reason: "the cluster id is empty".into(),
            });
        }
        if validity < Duration::from_secs(1) {
            return Err(CaError::InvalidValidity(validity));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.chain().to_string()))?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role_ou(role));
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = [role_ou(role), node_id]
            .into_iter()
            .map(|name| {
                name.try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| {
                        CaError::InvalidNodeId(format!("{name}: {}", e.chain()))
                    })
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        let now = OffsetDateTime::now_utc();
        params.not_before = now;
        params.not_after = add(now, validity, "node")?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| CaError::Certificate {
                what: "node",
                reason: e.chain().to_string(),
            })?;
        Ok(cert.pem())
    }

    /// A fresh key and a certificate for it, in one step (for the manager's
    /// own certificate at `swarm init`). Returns `(key_pem, cert_pem)`.
    pub fn issue(
        &self,
        node_id: &str,
        role: Role,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<(String, String), CaError> {
        let key = NodeKey::generate()?;
        let cert = self.sign(&key.csr_pem, node_id, role, cluster_id, validity)?;
        Ok((key.key_pem, cert))
    }
}

/// The SHA-256 of the first certificate in `cert_pem` (its DER), in base36,
/// left-padded to 50 characters: the digest part of a join token.
pub fn ca_digest(cert_pem: &str) -> Result<String, CaError> {
    let der = cert_from_pem(cert_pem, "CA certificate PEM")?;
    Ok(ca_digest_der(&der))
}

/// [`ca_digest`] of a DER certificate.
pub(crate) fn ca_digest_der(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    base36_encode(digest.as_ref(), 50)
}

/// A node's private key and a signing request for it. The key never leaves
/// the node; the CSR goes to a manager with the join token (or, for renewal,
/// over mutual TLS with the current certificate).
pub struct NodeKey {
    /// PKCS#8 PEM, ECDSA P-256.
    pub key_pem: String,
    /// PKCS#10 PEM.
    pub csr_pem: String,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl NodeKey {
    /// A new ECDSA P-256 key and its CSR.
    pub fn generate() -> Result<NodeKey, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::KeyGeneration(e.chain().to_string()))?;
        Self::with_key(key)
    }

    /// A new CSR for an existing key (renewal may keep the key).
    pub fn from_key_pem(key_pem: &str) -> Result<NodeKey, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::InvalidPem {
            what: "node key PEM",
            reason: e.chain().to_string(),
        })?;
        Self::with_key(key)
    }

    fn with_key(key: KeyPair) -> Result<NodeKey, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "swarm-node");
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| CaError::Certificate {
                what: "signing request",
                reason: e.chain().to_string(),
            })?;
        Ok(NodeKey {
            key_pem: key.serialize_pem(),
            csr_pem: csr,
        })
    }
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut serial = random_bytes::<16>()?;
    // Positive and with a non-zero leading byte, so it encodes in 16 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&serial))
}

fn add(
    now: OffsetDateTime,
    validity: Duration,
    what: &'static str,
) -> Result<OffsetDateTime, CaError> {
    time::Duration::try_from(validity)
        .ok()
        .and_then(|d| now.checked_add(d))
        .ok_or_else(|| CaError::Certificate {
            what,
            reason: format!("validity {validity:?} is too long"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_50_base36_chars_and_stable() {
        let ca = RootCa::generate("cluster1").unwrap();
        let digest = ca.digest();
        assert_eq!(digest.len(), 50);
        assert!(is_base36(&digest));
        assert_eq!(ca_digest(ca.cert_pem()).unwrap(), digest);
        let reloaded = RootCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(reloaded.digest(), digest);
        assert_ne!(RootCa::generate("cluster1").unwrap().digest(), digest);
    }

    #[test]
    fn root_is_swarm_ca_for_20_years() {
        let ca = RootCa::generate("cluster1").unwrap();
        let der = cert_from_pem(ca.cert_pem(), "test").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.is_ca());
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "swarm-ca");
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(life >= 20 * 365 * 24 * 3600, "root lives {life} s");
    }

    #[test]
    fn from_pem_refuses_a_foreign_key_and_garbage() {
        let ca = RootCa::generate("c").unwrap();
        let other = RootCa::generate("c").unwrap();
        let err = RootCa::from_pem(ca.cert_pem(), other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(RootCa::from_pem("not pem", ca.key_pem()).is_err());
        let node = NodeKey::generate().unwrap();
        let leaf = ca
            .sign(
                &node.csr_pem,
                "abc",
                Role::Worker,
                "c",
                Duration::from_secs(60),
            )
            .unwrap();
        let err = RootCa::from_pem(&leaf, &node.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn sign_refuses_bad_inputs() {
        let ca = RootCa::generate("c").unwrap();
        let node = NodeKey::generate().unwrap();
        let year = Duration::from_secs(365 * 86400);
        assert!(matches!(
            ca.sign(&node.csr_pem, "Bad.Id", Role::Worker, "c", year),
            Err(CaError::InvalidNodeId(_))
        ));
        assert!(matches!(
            ca.sign(
                &node.csr_pem,
                "abc",
                Role::Worker,
                "c",
                Duration::from_millis(500)
            ),
            Err(CaError::InvalidValidity(_))
        ));
        assert!(matches!(
            ca.sign("garbage", "abc", Role::Worker, "c", year),
            Err(CaError::InvalidCsr(_))
        ));
        // A CSR whose signature was tampered with is refused.
        let mut forged = node.csr_pem.clone().into_bytes();
        let i = forged.len() / 2;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(ca.sign(&forged, "abc", Role::Worker, "c", year).is_err());
    }

    #[test]
    fn renewal_can_keep_the_key() {
        let node = NodeKey::generate().unwrap();
        let again = NodeKey::from_key_pem(&node.key_pem).unwrap();
        assert_eq!(again.key_pem, node.key_pem);
        assert!(format!("{node:?}").contains("redacted"));
        assert!(!format!("{node:?}").contains("PRIVATE"));
    }
}
