//! Fuzzes the payload decoder, which runs on authenticated plaintext (the
//! envelope fuzzer cannot forge its way past the AEAD to reach it), and the
//! endpoint tables fed with whatever decodes: no panic, and what decodes
//! re-encodes to the same message.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shoal_agent::gossip::codec::Message;
use shoal_agent::gossip::table::{ManualClock, Tables, DEFAULT_PAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let encoded = message.encode().expect("a decoded message encodes");
    assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));

    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut tables = Tables::with_clock("fuzz-node", clock);
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
            let _ = tables.missing_for(&digest, DEFAULT_PAGE_BYTES);
        }
        Message::Membership(_) | Message::MemberList(_) => {}
    }
    let _ = tables.digest();
    let _ = tables.sizes();
    let _ = tables.live_endpoints("app", |_| true);
    tables.reap(u64::MAX);
});
