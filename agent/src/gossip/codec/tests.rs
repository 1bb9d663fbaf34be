//! The envelope as a receiving agent sees it: good messages arrive intact on
//! every channel and key; everything else is dropped, classified and counted,
//! and no input makes the decoder panic.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal_control::objects::MacAddr;

use super::*;
use crate::gossip::table::{
    CertNotary, EndpointRecord, ManualClock, Protocol, PublishedPort, Tables,
};

const NOW: u64 = 1_700_000_000_000;

/// Tables of node `nodea` that sign with a real node key (a fresh CA), so
/// deltas have their real size; and its certificate (DER).
fn signed_tables() -> (Tables, Vec<u8>) {
    use shoal_control::ca::RootCa;
    use shoal_control::objects::Role;
    let ca = RootCa::generate("c1").expect("CA");
    let day = std::time::Duration::from_secs(86_400);
    let (key, cert) = ca.issue("nodea", Role::Worker, "c1", day).expect("cert");
    let notary = CertNotary::new(ca.cert_pem(), &cert, &key).expect("notary");
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).expect("PEM");
    let tables =
        Tables::with_clock("nodea", Arc::new(ManualClock::new(NOW))).with_notary(Box::new(notary));
    (tables, der.to_vec())
}

fn ring() -> Keyring {
    Keyring::new(1, SecretKey::new([7; KEY_LEN]))
}

fn sender() -> Codec {
    Codec::new("node-a", ring(), NOW - 60_000)
}

fn receiver() -> Codec {
    Codec::new("node-b", ring(), NOW)
}

/// One message of each kind, made once (signatures are randomized).
fn messages() -> Vec<Message> {
    static MESSAGES: std::sync::OnceLock<Vec<Message>> = std::sync::OnceLock::new();
    MESSAGES.get_or_init(make_messages).clone()
}

fn make_messages() -> Vec<Message> {
    let (mut tables, certificate) = signed_tables();
    let ip = Ipv4Addr::new(10, 0, 0, 2);
    let delta = tables.publish(
        "app",
        EndpointRecord {
            task_id: "t1".into(),
            service: "web".into(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: Ipv4Addr::new(192, 168, 0, 1),
            ports: vec![PublishedPort {
                protocol: Protocol::Udp,
                published: 5353,
                target: 53,
            }],
            vip: None,
            aliases: Vec::new(),
            host_ports: Vec::new(),
        },
    );
    tables.settle();
    let digest = tables.digest();
    let page = tables.missing_for(&Default::default(), 4_096).remove(0);
    vec![
        Message::Membership(vec![1, 2, 3, 255]),
        Message::Deltas(vec![delta]),
        Message::Digest(digest.clone()),
        Message::SyncRequest { session: 9, digest },
        Message::SyncPage {
            session: 9,
            index: 0,
            last: true,
            page,
        },
        Message::Hello,
        Message::Certificates(vec![certificate]),
    ]
}

#[test]
fn every_message_round_trips_on_both_channels() {
    let (mut a, mut b) = (sender(), receiver());
    for message in messages() {
        for channel in [Channel::Datagram, Channel::Stream] {
            let sealed = a.seal(channel, &message, NOW).expect("seals");
            let got = b.open(channel, &sealed, NOW + 5).expect("opens");
            assert_eq!(got.message, message);
            assert_eq!(got.sender, sender_id("node-a"));
            assert_eq!((got.key_id, got.sent_at), (1, NOW));
        }
    }
    assert_eq!(b.stats().accepted, 2 * messages().len() as u64);
    assert_eq!(b.stats().rejected(), 0);
}

#[test]
fn keys_rotate_without_a_restart() {
    let (mut a, mut b) = (sender(), receiver());
    let old = a
        .seal(Channel::Datagram, &Message::Membership(vec![1]), NOW)
        .unwrap();
    // Step 1: the new key reaches b; step 2: a seals with it.
    b.keyring_mut().insert(2, SecretKey::new([9; KEY_LEN]));
    a.keyring_mut().rotate(2, SecretKey::new([9; KEY_LEN]));
    let new = a
        .seal(Channel::Datagram, &Message::Membership(vec![2]), NOW)
        .unwrap();
    assert_eq!(b.open(Channel::Datagram, &new, NOW).unwrap().key_id, 2);
    assert_eq!(
        b.open(Channel::Datagram, &old, NOW).unwrap().key_id,
        1,
        "old key still opens"
    );

    // A node that never got key 2 cannot read it, and says why.
    let mut c = receiver();
    let again = a
        .seal(Channel::Datagram, &Message::Membership(vec![3]), NOW)
        .unwrap();
    assert_eq!(
        c.open(Channel::Datagram, &again, NOW),
        Err(Rejected::UnknownKey(2))
    );
    // Step 3: once key 1 is removed, messages under it are refused.
    b.keyring_mut().set_primary(2).unwrap();
    b.keyring_mut().remove(1).unwrap();
    let stale = sender()
        .seal(Channel::Datagram, &Message::Membership(vec![4]), NOW)
        .unwrap();
    assert_eq!(
        b.open(Channel::Datagram, &stale, NOW),
        Err(Rejected::UnknownKey(1))
    );
    assert_eq!((b.stats().unknown_key, c.stats().unknown_key), (1, 1));
}

#[test]
fn replays_and_old_runs_are_refused() {
    let (mut a, mut b) = (sender(), receiver());
    let m = Message::Membership(vec![1]);
    let first = a.seal(Channel::Datagram, &m, NOW).unwrap();
    let second = a.seal(Channel::Datagram, &m, NOW).unwrap();
    assert!(b.open(Channel::Datagram, &second, NOW).is_ok());
    assert!(
        b.open(Channel::Datagram, &first, NOW).is_ok(),
        "reordered, inside the window"
    );
    assert!(matches!(
        b.open(Channel::Datagram, &first, NOW),
        Err(Rejected::Replayed { counter: 1, .. })
    ));
    // Counters are per channel: a stream frame with counter 1 is new.
    let frame = a.seal(Channel::Stream, &m, NOW).unwrap();
    assert!(b.open(Channel::Stream, &frame, NOW).is_ok());
    // A datagram cannot be replayed as a frame.
    assert_eq!(
        b.open(Channel::Stream, &second, NOW),
        Err(Rejected::Malformed("message sent on another channel"))
    );

    // The sender restarts: a later epoch, counters from 1 again.
    let mut restarted = Codec::new("node-a", ring(), NOW);
    let fresh = restarted.seal(Channel::Datagram, &m, NOW).unwrap();
    assert!(b.open(Channel::Datagram, &fresh, NOW).is_ok());
    let late = a.seal(Channel::Datagram, &m, NOW).unwrap();
    assert!(matches!(
        b.open(Channel::Datagram, &late, NOW),
        Err(Rejected::Replayed { .. })
    ));
    assert_eq!(b.stats().replayed, 2);
    assert_eq!(b.stats().malformed, 1);
}

#[test]
fn messages_far_from_our_clock_are_refused() {
    let (mut a, mut b) = (sender(), receiver());
    let m = Message::Membership(vec![]);
    let early = a
        .seal(Channel::Datagram, &m, NOW - MAX_CLOCK_SKEW_MS - 1)
        .unwrap();
    let late = a
        .seal(Channel::Datagram, &m, NOW + MAX_CLOCK_SKEW_MS + 1)
        .unwrap();
    let edge = a
        .seal(Channel::Datagram, &m, NOW + MAX_CLOCK_SKEW_MS)
        .unwrap();
    assert!(matches!(
        b.open(Channel::Datagram, &early, NOW),
        Err(Rejected::Skewed { .. })
    ));
    assert!(matches!(
        b.open(Channel::Datagram, &late, NOW),
        Err(Rejected::Skewed { .. })
    ));
    assert!(b.open(Channel::Datagram, &edge, NOW).is_ok());
    assert_eq!(b.stats().skewed, 2);
}

#[test]
fn every_single_bit_flip_is_refused_with_its_class() {
    let mut a = sender();
    let sealed = a.seal(Channel::Datagram, &messages()[1], NOW).unwrap();
    let mut b = receiver();
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let got = b.open(Channel::Datagram, &bad, NOW);
        let expected = match bit / 8 {
            0..=4 => "malformed",
            5..=8 => "unknown key",
            _ => "unauthenticated",
        };
        let class = match got {
            Err(Rejected::Malformed(_)) => "malformed",
            Err(Rejected::UnknownKey(_)) => "unknown key",
            Err(Rejected::Unauthenticated) => "unauthenticated",
            other => panic!("bit {bit}: {other:?}"),
        };
        assert_eq!(class, expected, "bit {bit}");
    }
    let s = b.stats();
    assert_eq!((s.malformed, s.unknown_key), (40, 32));
    assert_eq!(s.unauthenticated as usize, sealed.len() * 8 - 72);
}

#[test]
fn short_and_oversized_inputs_are_refused() {
    let mut a = sender();
    let sealed = a.seal(Channel::Datagram, &messages()[0], NOW).unwrap();
    let mut b = receiver();
    for len in 0..sealed.len() {
        let got = b.open(Channel::Datagram, &sealed[..len], NOW);
        if len < OVERHEAD {
            assert!(
                matches!(got, Err(Rejected::Truncated { .. })),
                "{len}: {got:?}"
            );
        } else {
            assert_eq!(got, Err(Rejected::Unauthenticated), "{len}");
        }
    }
    let huge = vec![0u8; MAX_DATAGRAM + 1];
    assert!(matches!(
        b.open(Channel::Datagram, &huge, NOW),
        Err(Rejected::TooLarge { .. })
    ));
    assert_eq!(b.stats().too_large, 1);

    let big = Message::Membership(vec![0; MAX_DATAGRAM]);
    assert!(matches!(
        a.seal(Channel::Datagram, &big, NOW),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(a.seal(Channel::Stream, &big, NOW).is_ok(), "fits a frame");
}

#[test]
fn frames_reassemble_from_a_byte_stream() {
    let (mut a, mut b) = (sender(), receiver());
    let mut stream = Vec::new();
    for m in messages() {
        stream.extend(a.seal_frame(&m, NOW).unwrap());
    }
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in stream.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Some(received) = b.open_frame(&mut buf, NOW).expect("valid stream") {
            got.push(received.message);
        }
    }
    assert_eq!(got, messages());
    assert!(buf.is_empty());

    let mut hostile = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        b.open_frame(&mut hostile, NOW),
        Err(Rejected::TooLarge { .. })
    ));
    // The largest frame announced, three bytes sent: nothing is set aside
    // for the rest until it arrives.
    let mut announced = BytesMut::from(&(MAX_FRAME as u32).to_be_bytes()[..]);
    announced.extend_from_slice(&[1, 2, 3]);
    assert_eq!(b.open_frame(&mut announced, NOW), Ok(None));
    assert!(
        announced.capacity() < 64 * 1024,
        "{} bytes reserved for an announced frame",
        announced.capacity()
    );
}

#[test]
fn deltas_are_packed_into_datagrams_that_fit() {
    let (mut tables, _) = signed_tables();
    let deltas: Vec<_> = (0..200u32)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            let record = EndpointRecord {
                task_id: format!("task-{i:022}"),
                service: "web".into(),
                ip,
                mac: MacAddr::from_ipv4(ip),
                vtep: Ipv4Addr::new(192, 168, 0, 1),
                ports: Vec::new(),
                vip: None,
                aliases: Vec::new(),
                host_ports: Vec::new(),
            };
            tables.publish("network-with-a-long-name", record)
        })
        .collect();
    let (mut a, mut b) = (sender(), receiver());
    let batches = Message::deltas_for_datagrams(deltas.clone());
    assert!(batches.len() > 5);
    let mut got = Vec::new();
    for m in batches {
        let sealed = a.seal(Channel::Datagram, &m, NOW).expect("fits a datagram");
        if let Message::Deltas(d) = b.open(Channel::Datagram, &sealed, NOW).unwrap().message {
            got.extend(d);
        }
    }
    assert_eq!(got, deltas);
}

/// Bounded random testing of the decoder (the fuzz target in `fuzz/` goes
/// further): no input panics, nothing forged is accepted, and every input is
/// counted exactly once.
#[test]
fn random_and_mutated_inputs_never_panic_and_are_all_counted() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x05_40a1);
    let mut a = sender();
    let mut b = receiver();
    let valid = messages();
    let mut inputs = 0u64;
    let mut accepted = 0u64;

    for i in 0..20_000 {
        let channel = if i % 2 == 0 {
            Channel::Datagram
        } else {
            Channel::Stream
        };
        let original = a.seal(channel, &valid[i % valid.len()], NOW).unwrap();
        let input: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..1_600))
                .map(|_| rng.random())
                .collect(),
            1 => {
                let mut bytes: Vec<u8> = (0..rng.random_range(0..400))
                    .map(|_| rng.random())
                    .collect();
                bytes.splice(0..0, original[..9].iter().copied());
                bytes
            }
            _ => mutate(&original, &mut rng),
        };
        inputs += 1;
        let got = b.open(channel, &input, NOW);
        if got.is_ok() {
            assert_eq!(input, original, "a forged input was accepted");
            accepted += 1;
        }
    }
    // Authentic payloads that are not messages: refused as malformed.
    for _ in 0..5_000 {
        let len = rng.random_range(0..300);
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let sealed = a.seal_payload(Channel::Datagram, &payload, NOW).unwrap();
        inputs += 1;
        match b.open(Channel::Datagram, &sealed, NOW) {
            Ok(_) => accepted += 1,
            Err(Rejected::Malformed(_)) => {}
            Err(other) => panic!("authentic payload refused as {other:?}"),
        }
    }
    let stats = b.stats();
    assert_eq!(stats.accepted, accepted);
    assert_eq!(stats.accepted + stats.rejected(), inputs);
    assert!(stats.malformed > 0 && stats.truncated > 0 && stats.unauthenticated > 0);

    let mut buf = BytesMut::new();
    for _ in 0..2_000 {
        let chunk: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        buf.extend_from_slice(&chunk);
        if b.open_frame(&mut buf, NOW).is_err() {
            buf.clear();
        }
    }
}

fn mutate(original: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let len = bytes.len().max(1);
        match rng.random_range(0..5) {
            0 => {
                let bit = rng.random_range(0..len * 8);
                if let Some(b) = bytes.get_mut(bit / 8) {
                    *b ^= 1 << (bit % 8);
                }
            }
            1 => bytes.truncate(rng.random_range(0..len)),
            2 => bytes.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
            3 => {
                let at = rng.random_range(0..len);
                let end = (at + rng.random_range(1..16)).min(bytes.len());
                for b in bytes.get_mut(at..end).unwrap_or_default() {
                    *b = rng.random();
                }
            }
            _ => {
                let at = rng.random_range(0..len).min(bytes.len());
                bytes.insert(at, rng.random());
            }
        }
    }
    bytes
}

/// The fuzz seeds are hand-encoded messages: golden vectors of the wire
/// format. If this fails after a deliberate format change, bump
/// `WIRE_VERSION` and re-encode the seeds.
#[test]
fn the_fuzz_seeds_still_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode_message");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("seeds directory") {
        let path = entry.expect("seed entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        let message = Message::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        kinds.push(std::mem::discriminant(&message));
    }
    kinds.sort_by_key(|k| format!("{k:?}"));
    kinds.dedup();
    assert_eq!(kinds.len(), 7, "one seed per message kind");
}

/// Rewrites `fuzz/seeds/decode_message` from [`messages`], one file per
/// message kind: run with `--ignored` after a deliberate format change.
#[test]
#[ignore]
fn write_the_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode_message");
    for message in messages() {
        let name = match &message {
            Message::Membership(_) => "membership",
            Message::Deltas(_) => "deltas",
            Message::Digest(_) => "digest",
            Message::SyncRequest { .. } => "syncrequest",
            Message::SyncPage { .. } => "syncpage",
            Message::Hello => "hello",
            Message::Certificates(_) => "certificates",
            Message::MemberList(_) => continue,
        };
        std::fs::write(dir.join(name), message.encode().expect("encodes")).expect("seed written");
    }
}

#[test]
fn a_removed_senders_messages_are_refused_under_a_valid_key() {
    let (mut a, mut b) = (sender(), receiver());
    let before = a
        .seal(Channel::Datagram, &Message::Membership(vec![1]), NOW)
        .unwrap();
    assert!(b.open(Channel::Datagram, &before, NOW).is_ok());
    b.refuse_senders(["node-a", "node-b"]);
    let after = a
        .seal(Channel::Datagram, &Message::Membership(vec![2]), NOW)
        .unwrap();
    assert_eq!(
        b.open(Channel::Datagram, &after, NOW),
        Err(Rejected::Refused(sender_id("node-a")))
    );
    assert_eq!(b.stats().refused, 1);
    assert_eq!(b.stats().rejected(), 1);
    // Its own id is never refused (a node does not refuse itself), and a
    // sender left off the list is heard again.
    assert!(!b.refused.contains(&b.sender()));
    b.refuse_senders([]);
    let again = a
        .seal(Channel::Datagram, &Message::Membership(vec![3]), NOW)
        .unwrap();
    assert!(b.open(Channel::Datagram, &again, NOW).is_ok());
}
