//! Fuzzes the gossip envelope decoder as a receiving agent runs it: any
//! bytes, as a UDP datagram, a TCP frame body, or a TCP byte stream. The
//! decoder must never panic and must count every input exactly once.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_agent::gossip::codec::{Channel, Codec, Keyring, SecretKey, KEY_LEN};

const NOW: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let keyring = Keyring::new(1, SecretKey::new([7; KEY_LEN]));
    let mut codec = Codec::new("fuzz-receiver", keyring, NOW);
    let mut opened = 0u64;
    match mode % 3 {
        0 => {
            opened += 1;
            let _ = codec.open(Channel::Datagram, input, NOW);
        }
        1 => {
            opened += 1;
            let _ = codec.open(Channel::Stream, input, NOW);
        }
        _ => {
            let mut buf = BytesMut::new();
            // Feed the stream in uneven pieces, as TCP reads would.
            for chunk in input.chunks(usize::from(mode / 3).max(1)) {
                buf.extend_from_slice(chunk);
                loop {
                    let before = codec.stats();
                    match codec.open_frame(&mut buf, NOW) {
                        Ok(Some(_)) => opened += 1,
                        Ok(None) => break,
                        Err(_) => {
                            assert_ne!(codec.stats(), before, "rejection not counted");
                            return;
                        }
                    }
                }
            }
        }
    }
    let stats = codec.stats();
    assert_eq!(stats.accepted + stats.rejected(), opened);
    assert_eq!(stats.accepted, 0, "a forged input was accepted");
});
