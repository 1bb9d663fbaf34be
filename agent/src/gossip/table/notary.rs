//! Who wrote a record: every delta (and every owner's authority over a key
//! range) is signed by its owner, and a replica stores only what checks out
//! against the owner's certificate. Holding the cluster's gossip key lets a
//! node speak gossip, not write another node's records.
//!
//! [`CertNotary`] is the agent's: it signs with the node's key and checks
//! signatures against node certificates verified against the cluster's
//! root, learned from peers as they hand them on (a sync answer carries the
//! certificates of the owners it lists). [`HashNotary`] stands in for it in
//! the simulation and the table tests: anyone can forge its proofs.

use shoal_control::error_chain::ErrorChain;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use ring::digest;
use shoal_control::ca::{CaError, CertChecker, CertifiedKey, KeyId, NodeSigner};

use super::record::Proof;

/// How far ahead of ours a certificate's issuer's clock may be.
const CLOCK_SKEW_MS: u64 = crate::gossip::codec::MAX_CLOCK_SKEW_MS;

/// Keys remembered per owner (a renewal brings a new one) and in all.
const KEYS_PER_OWNER: usize = 4;
const MAX_KEYS: usize = 65_536;

/// What a check of a proof found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Signed with a key this node has no certificate for (yet): a sync
    /// with the owner brings it.
    UnknownKey,
    /// Unsigned, signed by another node, expired, or altered.
    Invalid,
}

/// Signs this node's statements and checks the others'.
pub trait Notary: Send {
    /// This node's proof for `message` (`Local` when it holds no key).
    fn sign(&self, message: &[u8]) -> Proof;
    /// Whether `proof` is `owner`'s signature of `message`, at `now_ms`.
    fn verify(&self, owner: &str, proof: &Proof, message: &[u8], now_ms: u64) -> Verdict;
    /// Takes a certificate a peer handed on; false if it does not check out.
    fn learn(&mut self, certificate: &[u8], now_ms: u64) -> bool;
    /// The certificate of `owner`'s key `key`, to hand on to a peer.
    fn certificate(&self, owner: &str, key: &KeyId) -> Option<Vec<u8>>;
    /// Signs with a renewed certificate and key from now on.
    fn rekey(&mut self, _cert_pem: &str, _key_pem: &str) -> Result<(), CaError> {
        Err(CaError::InvalidCertificate(
            "this node's gossip holds no node key to renew".into(),
        ))
    }
}

/// The agent's notary: the node's own key, and the certified keys of the
/// others.
pub struct CertNotary {
    signer: NodeSigner,
    checker: CertChecker,
    keys: HashMap<(String, KeyId), CertifiedKey>,
    /// SHA-256 of every certificate in `keys`, so a certificate handed on
    /// again is not checked again.
    seen: HashMap<[u8; 32], (String, KeyId)>,
}

impl std::fmt::Debug for CertNotary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertNotary")
            .field("key", &self.signer.key_id())
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl CertNotary {
    /// The notary of a node holding `key_pem` and its certificate
    /// `cert_pem`, in the cluster whose root is `ca_pem`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<CertNotary, CaError> {
        let mut notary = CertNotary {
            signer: NodeSigner::from_key_pem(key_pem)?,
            checker: CertChecker::new(ca_pem)?,
            keys: HashMap::new(),
            seen: HashMap::new(),
        };
        notary.take_own(cert_pem)?;
        Ok(notary)
    }

    /// A renewed certificate and key; the old certificate stays known (and
    /// handed on) until it expires, for what was signed with it.
    pub fn renew(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), CaError> {
        let signer = NodeSigner::from_key_pem(key_pem)?;
        let previous = std::mem::replace(&mut self.signer, signer);
        if let Err(e) = self.take_own(cert_pem) {
            self.signer = previous;
            return Err(e);
        }
        Ok(())
    }

    fn take_own(&mut self, cert_pem: &str) -> Result<(), CaError> {
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| CaError::InvalidPem {
                what: "node certificate PEM",
                reason: e.chain().to_string(),
            })?;
        let certified = check_with_skew(&self.checker, &der, unix_ms_now())?;
        if certified.key_id != self.signer.key_id() {
            return Err(CaError::InvalidCertificate(
                "it certifies another key than the node's".into(),
            ));
        }
        self.insert(certified, unix_ms_now());
        Ok(())
    }

    fn insert(&mut self, key: CertifiedKey, now_ms: u64) -> bool {
        // Forget expired keys, then the owner's oldest past the limit.
        if self.keys.len() >= MAX_KEYS {
            self.keys.retain(|_, k| k.not_after_ms > now_ms);
            self.seen.retain(|_, id| self.keys.contains_key(id));
            if self.keys.len() >= MAX_KEYS {
                return false;
            }
        }
        let mut owned: Vec<(KeyId, u64)> = self
            .keys
            .iter()
            .filter(|((owner, _), _)| *owner == key.node_id)
            .map(|((_, id), k)| (*id, k.not_after_ms))
            .collect();
        if owned.len() >= KEYS_PER_OWNER {
            owned.sort_by_key(|(_, not_after)| *not_after);
            if let Some((oldest, _)) = owned.first() {
                self.keys.remove(&(key.node_id.clone(), *oldest));
            }
        }
        let digest = certificate_digest(&key.certificate);
        let id = (key.node_id.clone(), key.key_id);
        self.seen.insert(digest, id.clone());
        self.keys.insert(id, key);
        true
    }
}

impl Notary for CertNotary {
    fn sign(&self, message: &[u8]) -> Proof {
        match self.signer.sign(message) {
            Ok(signature) => Proof::Signed {
                key: self.signer.key_id(),
                signature,
            },
            Err(e) => {
                tracing::error!("cannot sign a gossip record: {}", e.chain());
                Proof::Local
            }
        }
    }

    fn verify(&self, owner: &str, proof: &Proof, message: &[u8], now_ms: u64) -> Verdict {
        let Proof::Signed { key, signature } = proof else {
            return Verdict::Invalid;
        };
        match self.keys.get(&(owner.to_string(), *key)) {
            None => Verdict::UnknownKey,
            Some(k) if k.not_after_ms < now_ms => Verdict::Invalid,
            Some(k) if k.verify(message, signature) => Verdict::Valid,
            Some(_) => Verdict::Invalid,
        }
    }

    fn learn(&mut self, certificate: &[u8], now_ms: u64) -> bool {
        let digest = certificate_digest(certificate);
        if let Some(id) = self.seen.get(&digest) {
            if self.keys.contains_key(id) {
                return true;
            }
            // Forgotten since (a newer key of its owner took its place).
            self.seen.remove(&digest);
        }
        match check_with_skew(&self.checker, certificate, now_ms) {
            Ok(key) => self.insert(key, now_ms),
            Err(e) => {
                tracing::debug!("gossip: a handed-on certificate is refused: {}", e.chain());
                false
            }
        }
    }

    fn certificate(&self, owner: &str, key: &KeyId) -> Option<Vec<u8>> {
        self.keys
            .get(&(owner.to_string(), *key))
            .map(|k| k.certificate.clone())
    }

    fn rekey(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), CaError> {
        self.renew(cert_pem, key_pem)
    }
}

/// Checks a certificate at `now_ms`, or else a little later: one issued a
/// moment ago by a manager whose clock runs ahead of ours is not valid yet
/// here. Allows the skew gossip allows.
fn check_with_skew(
    checker: &CertChecker,
    certificate: &[u8],
    now_ms: u64,
) -> Result<CertifiedKey, CaError> {
    let check = |ms: u64| checker.check(certificate, UNIX_EPOCH + Duration::from_millis(ms));
    check(now_ms).or_else(|e| check(now_ms.saturating_add(CLOCK_SKEW_MS)).map_err(|_| e))
}

fn certificate_digest(certificate: &[u8]) -> [u8; 32] {
    let hash = digest::digest(&digest::SHA256, certificate);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_ref());
    out
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A stand-in for [`CertNotary`] where keys do not matter: the simulation
/// and the table tests. Its "signature" is a hash of the owner and the
/// message, so a record changed in transit, or claimed for another owner
/// by a careless test, still fails; anyone can forge one on purpose.
#[derive(Clone, Debug)]
pub struct HashNotary {
    node: String,
}

impl HashNotary {
    pub fn new(node: &str) -> HashNotary {
        HashNotary {
            node: node.to_string(),
        }
    }

    fn proof(owner: &str, message: &[u8]) -> Proof {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(owner.as_bytes());
        ctx.update(&[0]);
        ctx.update(message);
        let hash = ctx.finish();
        Proof::Signed {
            key: [0; 8],
            signature: hash.as_ref().to_vec(),
        }
    }
}

impl Notary for HashNotary {
    fn sign(&self, message: &[u8]) -> Proof {
        Self::proof(&self.node, message)
    }

    fn verify(&self, owner: &str, proof: &Proof, message: &[u8], _now_ms: u64) -> Verdict {
        if *proof == Self::proof(owner, message) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    fn learn(&mut self, _certificate: &[u8], _now_ms: u64) -> bool {
        true
    }

    fn certificate(&self, _owner: &str, _key: &KeyId) -> Option<Vec<u8>> {
        None
    }
}

/// The notary of tables built without one: it signs nothing and accepts
/// nothing from peers, so forgetting to give the agent's tables a real
/// notary fails closed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKeys;

impl Notary for NoKeys {
    fn sign(&self, _message: &[u8]) -> Proof {
        Proof::Local
    }

    fn verify(&self, _owner: &str, _proof: &Proof, _message: &[u8], _now_ms: u64) -> Verdict {
        Verdict::Invalid
    }

    fn learn(&mut self, _certificate: &[u8], _now_ms: u64) -> bool {
        false
    }

    fn certificate(&self, _owner: &str, _key: &KeyId) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::ca::RootCa;
    use shoal_control::objects::Role;

    const DAY: Duration = Duration::from_secs(86400);

    fn der(pem: &str) -> Vec<u8> {
        rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap()
    }

    #[test]
    fn only_the_owner_key_vouches_for_the_owner() {
        let ca = RootCa::generate("c1").unwrap();
        let (key_a, cert_a) = ca.issue("nodea", Role::Worker, "c1", DAY).unwrap();
        let (key_b, cert_b) = ca.issue("nodeb", Role::Worker, "c1", DAY).unwrap();
        let a = CertNotary::new(ca.cert_pem(), &cert_a, &key_a).unwrap();
        let mut b = CertNotary::new(ca.cert_pem(), &cert_b, &key_b).unwrap();
        let now = unix_ms_now();
        let proof = a.sign(b"entry");
        assert_eq!(
            b.verify("nodea", &proof, b"entry", now),
            Verdict::UnknownKey
        );
        assert!(b.learn(&der(&cert_a), now));
        assert_eq!(b.verify("nodea", &proof, b"entry", now), Verdict::Valid);
        assert_eq!(b.verify("nodea", &proof, b"entrx", now), Verdict::Invalid);
        // a's key claimed for b, or for a node b knows nothing of.
        assert_eq!(
            b.verify("nodeb", &proof, b"entry", now),
            Verdict::UnknownKey
        );
        let forged = b.sign(b"entry");
        assert_eq!(
            b.verify("nodea", &forged, b"entry", now),
            Verdict::UnknownKey
        );
        assert_eq!(
            b.verify("nodea", &Proof::Local, b"entry", now),
            Verdict::Invalid
        );
        // Past the certificate's end.
        assert_eq!(
            b.verify("nodea", &proof, b"entry", now + 2 * 86_400_000),
            Verdict::Invalid
        );
        assert_eq!(
            b.certificate("nodea", &a.signer.key_id()),
            Some(der(&cert_a))
        );
    }

    #[test]
    fn foreign_certificates_are_not_learned_and_a_renewal_keeps_the_old_key() {
        let ca = RootCa::generate("c1").unwrap();
        let other = RootCa::generate("c1").unwrap();
        let (key_a, cert_a) = ca.issue("nodea", Role::Worker, "c1", DAY).unwrap();
        let (_, foreign) = other.issue("nodeb", Role::Worker, "c1", DAY).unwrap();
        let mut a = CertNotary::new(ca.cert_pem(), &cert_a, &key_a).unwrap();
        assert!(!a.learn(&der(&foreign), unix_ms_now()));
        assert!(!a.learn(b"junk", unix_ms_now()));
        // A certificate that is not this key's is refused as our own.
        let (_, cert_c) = ca.issue("nodea", Role::Worker, "c1", DAY).unwrap();
        assert!(CertNotary::new(ca.cert_pem(), &cert_c, &key_a).is_err());
        let old = a.sign(b"x");
        let (key_new, cert_new) = ca.issue("nodea", Role::Worker, "c1", DAY).unwrap();
        a.renew(&cert_new, &key_new).unwrap();
        let new = a.sign(b"x");
        assert_ne!(old, new);
        let now = unix_ms_now();
        assert_eq!(a.verify("nodea", &old, b"x", now), Verdict::Valid);
        assert_eq!(a.verify("nodea", &new, b"x", now), Verdict::Valid);
    }

    /// What signing costs per record: bytes on the wire, deltas per
    /// broadcast datagram, and CPU to sign, to verify, and to check a
    /// certificate handed on. A measurement, not a check: run it with
    /// `cargo test -p shoal-agent --release --lib -- --ignored
    /// signature_cost --nocapture`.
    #[test]
    #[ignore = "a measurement: run it in release with --nocapture"]
    fn signature_cost() {
        use crate::gossip::table::{
            pack_deltas, Change, Delta, EndpointRecord, ManualClock, Tables, Version,
        };
        use std::time::Instant;

        let ca = RootCa::generate("c1").unwrap();
        let id = "0123456789abcdefghijklmno";
        let (key, cert) = ca.issue(id, Role::Worker, "c1", DAY).unwrap();
        let signer = CertNotary::new(ca.cert_pem(), &cert, &key).unwrap();
        let (key_b, cert_b) = ca.issue("nodeb", Role::Worker, "c1", DAY).unwrap();
        let mut verifier = CertNotary::new(ca.cert_pem(), &cert_b, &key_b).unwrap();
        let now = unix_ms_now();
        let ip = std::net::Ipv4Addr::new(10, 0, 3, 17);
        let delta = |proof: Proof| Delta {
            network: "4x0kqg7w2u1d9vqj3k5n8p0r".into(),
            owner: id.into(),
            version: Version {
                epoch: now,
                seq: 42,
            },
            written_at: now,
            change: Change::Publish(EndpointRecord {
                task_id: "7ym2c0qk9s3x1z8v5b4n6m0p2".into(),
                service: "web".into(),
                ip,
                mac: shoal_control::objects::MacAddr::from_ipv4(ip),
                vtep: std::net::Ipv4Addr::new(198, 18, 0, 3),
                ports: Vec::new(),
                vip: Some(std::net::Ipv4Addr::new(10, 0, 3, 254)),
                aliases: Vec::new(),
                host_ports: Vec::new(),
            }),
            proof,
        };
        let plain = delta(Proof::Local);
        let message = plain.signed_bytes();
        let signed = delta(signer.sign(&message));
        let per_datagram = |d: &Delta| pack_deltas(vec![d.clone(); 100], 600)[0].len();
        println!(
            "bytes per delta: {} unsigned, {} signed (+{}); deltas per 600-byte broadcast: {} -> {}",
            plain.encoded_len(),
            signed.encoded_len(),
            signed.encoded_len() - plain.encoded_len(),
            per_datagram(&plain),
            per_datagram(&signed),
        );

        let n = 2_000;
        let started = Instant::now();
        let proofs: Vec<Proof> = (0..n).map(|_| signer.sign(&message)).collect();
        let sign = started.elapsed() / n;
        let certificate = der(&cert);
        let started = Instant::now();
        for _ in 0..200 {
            verifier.seen.clear();
            verifier.keys.clear();
            assert!(verifier.learn(&certificate, now));
        }
        let learn = started.elapsed() / 200;
        let started = Instant::now();
        for proof in &proofs {
            assert_eq!(verifier.verify(id, proof, &message, now), Verdict::Valid);
        }
        let verify = started.elapsed() / n;
        println!(
            "CPU per record: sign {sign:?}, verify {verify:?}; a new certificate checked once: {learn:?}"
        );

        // A whole table: 1,000 records signed and checked by a peer.
        let clock = std::sync::Arc::new(ManualClock::new(now));
        let mut owner = Tables::with_clock(id, clock.clone()).with_notary(Box::new(signer));
        let mut peer = Tables::with_clock("nodeb", clock).with_notary(Box::new(verifier));
        let started = Instant::now();
        let deltas: Vec<Delta> = (0..1000u32)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                let mut record = match &plain.change {
                    Change::Publish(r) => r.clone(),
                    Change::Withdraw { .. } => unreachable!(),
                };
                record.task_id = format!("task{i:021}");
                record.ip = ip;
                owner.publish("net", record)
            })
            .collect();
        let published = started.elapsed();
        let started = Instant::now();
        for d in deltas {
            assert!(peer.apply(d).changed);
        }
        println!(
            "1,000 records: published (signed) in {published:?}, applied (verified) in {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_hash_notary_catches_changes_and_the_empty_one_refuses_all() {
        let n = HashNotary::new("a");
        let proof = n.sign(b"m");
        assert_eq!(n.verify("a", &proof, b"m", 0), Verdict::Valid);
        assert_eq!(n.verify("b", &proof, b"m", 0), Verdict::Invalid);
        assert_eq!(n.verify("a", &proof, b"n", 0), Verdict::Invalid);
        assert_eq!(NoKeys.sign(b"m"), Proof::Local);
        assert_eq!(NoKeys.verify("a", &proof, b"m", 0), Verdict::Invalid);
    }
}
