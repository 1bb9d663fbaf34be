//! Fuzzes the payload decoder, which runs on authenticated plaintext (the
//! envelope fuzzer cannot forge its way past the AEAD to reach it), and the
//! endpoint tables fed with whatever decodes: no panic, and what decodes
//! re-encodes to the same message. The tables here trust every record's
//! proof, so the merge logic behind the signature check is reached
//! (`signed_records` fuzzes that check itself).

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shoal_agent::gossip::codec::Message;
use shoal_agent::gossip::table::{
    ManualClock, Notary, Proof, Tables, Verdict, DEFAULT_PAGE_BYTES,
};
use shoal_control::ca::{CaError, KeyId};

/// Accepts every proof: this target is about what comes after the check.
struct TrustAll;

impl Notary for TrustAll {
    fn sign(&self, _message: &[u8]) -> Proof {
        Proof::Signed {
            key: [0; 8],
            signature: vec![0; 64],
        }
    }
    fn verify(&self, _owner: &str, _proof: &Proof, _message: &[u8], _now_ms: u64) -> Verdict {
        Verdict::Valid
    }
    fn learn(&mut self, _certificate: &[u8], _now_ms: u64) -> bool {
        true
    }
    fn certificate(&self, _owner: &str, _key: &KeyId) -> Option<Vec<u8>> {
        None
    }
    fn rekey(&mut self, _cert_pem: &str, _key_pem: &str) -> Result<(), CaError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let encoded = message.encode().expect("a decoded message encodes");
    assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));

    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut tables = Tables::with_clock("fuzz-node", clock).with_notary(Box::new(TrustAll));
    tables.settle();
    match message {
        Message::Deltas(deltas) => {
            for delta in deltas {
                tables.apply(delta);
            }
        }
        Message::SyncPage { page, .. } => {
            tables.apply_page(page);
        }
        Message::Digest(digest) | Message::SyncRequest { digest, .. } => {
            let pages = tables.missing_for(&digest, DEFAULT_PAGE_BYTES);
            let _ = tables.certificates_for(&pages);
        }
        Message::Certificates(certificates) => {
            for certificate in certificates {
                tables.learn(&certificate);
            }
        }
        Message::Membership(_) | Message::MemberList(_) | Message::Hello => {}
    }
    let _ = tables.digest();
    let _ = tables.sizes();
    let _ = tables.live_endpoints("app", |_| true);
    tables.reap(u64::MAX);
});
