//! Fuzzes the first frame of a gossip stream as the acceptor reads it,
//! before anything is authenticated: any bytes as what a peer sends after
//! connecting. The reader takes at most one small frame (prefix and
//! `MAX_HELLO_FRAME` bytes), never panics, and the codec never accepts what
//! it read (the fuzzer does not hold the key).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shoal_agent::gossip::codec::{Channel, Codec, Keyring, SecretKey, FRAME_PREFIX_LEN, KEY_LEN};
use shoal_agent::gossip::transport::{read_hello, MAX_HELLO_FRAME};

const NOW: u64 = 1_700_000_000_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let hello = runtime().block_on(read_hello(&mut reader));
    let consumed = data.len() - reader.len();
    assert!(consumed <= FRAME_PREFIX_LEN + MAX_HELLO_FRAME, "read {consumed} bytes");
    if let Ok(frame) = hello {
        assert!(frame.len() <= MAX_HELLO_FRAME);
        let keyring = Keyring::new(1, SecretKey::new([7; KEY_LEN]));
        let mut codec = Codec::new("acceptor", keyring, NOW);
        assert!(codec.open(Channel::Stream, &frame, NOW).is_err(), "a forged hello opened");
    }
});
