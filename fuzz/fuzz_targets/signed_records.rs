//! Fuzzes the record verifier as a receiving agent runs it: any payload that
//! decodes (deltas, sync pages with authorities, certificates) fed to tables
//! whose notary checks proofs against a real cluster root and knows one
//! real node's certificate. Nothing the fuzzer makes may be stored, prune a
//! record, or be learned as a certificate: it holds no node key.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use shoal_agent::gossip::codec::Message;
use shoal_agent::gossip::table::{CertNotary, ManualClock, Tables};
use shoal_control::ca::RootCa;
use shoal_control::objects::Role;

/// The cluster root, a victim node (its certificate is known to the
/// receiver) and the receiver's own key and certificate, made once.
struct Cluster {
    ca_pem: String,
    victim_der: Vec<u8>,
    receiver: (String, String),
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let ca = RootCa::generate("fuzz").expect("CA");
        let year = Duration::from_secs(365 * 86_400);
        let (_, victim) = ca.issue("victim", Role::Worker, "fuzz", year).expect("cert");
        let der: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(victim.as_bytes()).expect("PEM");
        let (key, cert) = ca.issue("receiver", Role::Worker, "fuzz", year).expect("cert");
        Cluster {
            ca_pem: ca.cert_pem().to_string(),
            victim_der: der.to_vec(),
            receiver: (cert, key),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let c = cluster();
    let notary = CertNotary::new(&c.ca_pem, &c.receiver.0, &c.receiver.1).expect("notary");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut tables =
        Tables::with_clock("receiver", Arc::new(ManualClock::new(now))).with_notary(Box::new(notary));
    assert!(tables.learn(&c.victim_der));
    tables.settle();
    match message {
        Message::Deltas(deltas) => {
            for delta in deltas {
                let applied = tables.apply(delta);
                assert!(!applied.changed, "a forged delta was stored");
            }
        }
        Message::SyncPage { page, .. } => {
            let applied = tables.apply_page(page);
            assert_eq!(applied.changed, 0, "a forged page changed the tables");
        }
        Message::Certificates(certificates) => {
            for certificate in certificates {
                if certificate != c.victim_der {
                    assert!(!tables.learn(&certificate), "a forged certificate was learned");
                }
            }
        }
        _ => {}
    }
    assert!(tables.sizes().is_empty(), "something was stored");
});
