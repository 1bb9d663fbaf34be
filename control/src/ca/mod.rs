//! The cluster's certificate authority and the mutual-TLS layer of port 2377.
//!
//! It owns the root CA (ECDSA P-256, "swarm-ca", 20 years), signs node
//! certificates that carry the node id (CN), role (OU) and cluster id (O),
//! formats and checks join tokens (`SWMTKN-1-<CA digest>-<secret>`), pins the
//! CA of a manager during `swarm join`, builds the rustls/tonic TLS configs,
//! authorizes each RPC from its peer certificate, and seals data at rest with
//! the autolock key (`SWMKEY-1-...`); signs and checks statements made with
//! a node's own key (gossip records).
//!
//! It must never trust a peer it has not verified against this cluster's root,
//! never print a private key or unlock key, and never use a crypto provider
//! other than ring.

mod autolock;
mod encoding;
mod identity;
mod pinning;
mod root;
mod signing;
pub mod tls;
mod token;

#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod handshake_tests;

use std::net::SocketAddr;

pub use autolock::{open, seal, UnlockKey, UNLOCK_KEY_PREFIX};
pub use encoding::{base36_decode, base36_encode};
pub use identity::{
    authorize, authorize_request, peer_identity, renewal_delay, time_until_renewal, PeerIdentity,
    Required,
};
pub use pinning::{fetch_root_ca, FETCH_ROOT_CA_TIMEOUT};
pub use root::{ca_digest, NodeKey, RootCa, CA_COMMON_NAME, CA_VALIDITY};
pub use signing::{key_id, CertChecker, CertifiedKey, KeyId, NodeSigner, SIGNATURE_LEN};
pub use token::{JoinToken, DIGEST_LEN, JOIN_TOKEN_PREFIX, SECRET_LEN};

/// The DNS name every manager certificate carries and every client checks.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";
/// The DNS name (and OU) of worker certificates.
pub const WORKER_NAME: &str = "swarm-worker";

/// Everything that can go wrong in the CA and TLS layer.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("could not generate a key pair: {0}")]
    KeyGeneration(String),
    #[error("the system random number generator failed; check /dev/urandom")]
    Random,
    #[error("could not build the {what} certificate: {reason}")]
    Certificate { what: &'static str, reason: String },
    #[error("invalid {what}: {reason}")]
    InvalidPem { what: &'static str, reason: String },
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("invalid node certificate: {0}")]
    InvalidCertificate(String),
    #[error("invalid node id `{0}`: expected 1 to 63 lowercase base36 characters")]
    InvalidNodeId(String),
    #[error("invalid certificate validity {0:?}: it must be at least one second")]
    InvalidValidity(std::time::Duration),
    #[error("invalid join token: {0}")]
    InvalidJoinToken(String),
    #[error(
        "join token rejected: it matches neither this cluster's worker nor manager token \
         (it was rotated, or belongs to another cluster)"
    )]
    JoinTokenRejected,
    #[error(
        "the join token's CA digest does not match the manager's CA: wrong cluster or forged \
         manager (token pins {expected}, the manager presented {found})"
    )]
    DigestMismatch { expected: String, found: String },
    #[error("the manager at {addr} did not send its CA certificate after its own; is it a shoal manager?")]
    NoRootInChain { addr: SocketAddr },
    #[error("the manager at {addr} presented a certificate its CA did not sign for `swarm-manager`: {reason}")]
    UntrustedManager { addr: SocketAddr, reason: String },
    #[error("could not reach the manager at {addr}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with the manager at {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("the manager at {addr} did not finish the TLS handshake within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("invalid unlock key: {0}")]
    InvalidUnlockKey(String),
    #[error("could not encrypt the data: it is larger than ChaCha20-Poly1305 allows")]
    Seal,
    #[error(
        "could not decrypt the sealed data: wrong unlock key, or the data was altered or truncated"
    )]
    Unseal,
}
