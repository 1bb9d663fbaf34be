//! Fuzzes what the embedded DNS server does with a datagram or a TCP frame:
//! decode, answer from a table, encode. No panic; whatever goes back decodes
//! as a response and fits the transport; building a SERVFAIL never panics.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::LazyLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use shoal_agent::dns::wire::{handle, servfail, Outcome, Transport};
use shoal_agent::dns::{DnsEntry, DnsTable, MAX_UDP_PAYLOAD};

/// `web` (VIP 10.0.0.2, 3 tasks), `db` (dnsrr) and `big` (100 tasks, more
/// than a UDP answer holds) on network `n`, 10.0.0.0/16.
static TABLE: LazyLock<DnsTable> = LazyLock::new(|| {
    let entry = |service: &str, vip: Option<Ipv4Addr>, i: u32| DnsEntry {
        network: "n".into(),
        service: service.into(),
        vip,
        task: format!("{service}.{i}.t"),
        ip: Ipv4Addr::from(0x0a00_0100 + i),
    };
    let mut entries: Vec<DnsEntry> = (0..3)
        .map(|i| entry("web", Some([10, 0, 0, 2].into()), i))
        .collect();
    entries.extend((3..5).map(|i| entry("db", None, i)));
    entries.extend((5..105).map(|i| entry("big", Some([10, 0, 0, 3].into()), i)));
    DnsTable::from_entries(entries).with_subnet("n", "10.0.0.0/16".parse().expect("subnet"))
});

fuzz_target!(|data: &[u8]| {
    for (transport, limit) in [
        (Transport::Udp, usize::from(MAX_UDP_PAYLOAD)),
        (Transport::Tcp, usize::from(u16::MAX)),
    ] {
        if let Outcome::Reply(reply) = handle(&TABLE, "n", data, transport) {
            assert!(reply.len() <= limit);
            let decoded = Message::from_vec(&reply).expect("our reply decodes");
            assert_eq!(decoded.metadata.message_type, MessageType::Response);
        }
        if let Some(reply) = servfail(data, transport) {
            assert!(reply.len() <= limit);
        }
    }
});
