//! Bytes in, bytes out: decodes a query, applies [`answer`], and encodes the
//! reply within what the transport carries. Whatever does not decode is
//! dropped; this is the part the fuzzer drives.

use hickory_proto::op::{Message, ResponseCode};

use super::answer::{answer, response, Answer, MAX_UDP_PAYLOAD};
use super::table::DnsTable;

/// How a query arrived, which bounds the size of its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or what the client's EDNS advertises up to
    /// [`MAX_UDP_PAYLOAD`]; beyond that the reply is truncated (TC set).
    Udp,
    /// Length-prefixed, up to 65535 bytes.
    Tcp,
}

/// What the server does with a datagram or a TCP frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Send the query upstream unchanged.
    Forward,
    /// Send nothing: garbage, or not a query.
    Drop,
}

/// Handles one query received on `network`.
pub fn handle(table: &DnsTable, network: &str, bytes: &[u8], transport: Transport) -> Outcome {
    let Ok(query) = Message::from_vec(bytes) else {
        return Outcome::Drop;
    };
    match answer(table, network, &query) {
        Answer::Reply(reply) => {
            encode(&reply, limit(&query, transport)).map_or(Outcome::Drop, Outcome::Reply)
        }
        Answer::Forward => Outcome::Forward,
        Answer::Drop => Outcome::Drop,
    }
}

/// SERVFAIL for a query that could not be forwarded (no upstream answered in
/// time, or too many forwards in flight); `None` for garbage.
pub fn servfail(bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    let mut reply = response(&query, ResponseCode::ServFail, Vec::new());
    reply.metadata.authoritative = false;
    encode(&reply, limit(&query, transport))
}

fn limit(query: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Udp => usize::from(query.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        Transport::Tcp => usize::from(u16::MAX),
    }
}

/// Encodes `reply`; one too large for `limit` goes out as its header and
/// question with TC set, telling the client to ask again over TCP.
fn encode(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let truncated = reply.truncate().to_vec().ok()?;
    (truncated.len() <= limit).then_some(truncated)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    use proptest::prelude::*;

    use super::*;
    use crate::dns::table::DnsEntry;

    /// `big` has 200 tasks: far more A records than fit in 512 bytes.
    fn table() -> DnsTable {
        DnsTable::from_entries((0..200u32).map(|i| DnsEntry {
            network: "n".into(),
            service: "big".into(),
            vip: Some(Ipv4Addr::new(10, 0, 0, 2)),
            task: format!("big.{i}.x"),
            ip: Ipv4Addr::from(0x0a00_0100 + i),
        }))
    }

    fn query_bytes(name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut message = Message::new(9, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(
            Name::from_str(name).expect("name"),
            RecordType::A,
        ));
        if let Some(size) = edns {
            let mut opt = Edns::new();
            opt.set_max_payload(size);
            message.set_edns(opt);
        }
        message.to_vec().expect("encodes")
    }

    fn decode(outcome: Outcome) -> Message {
        match outcome {
            Outcome::Reply(bytes) => Message::from_vec(&bytes).expect("reply decodes"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn large_udp_answers_are_truncated_and_whole_over_tcp() {
        let udp = decode(handle(
            &table(),
            "n",
            &query_bytes("tasks.big.", None),
            Transport::Udp,
        ));
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.queries.len(), 1, "the question stays");

        let tcp = decode(handle(
            &table(),
            "n",
            &query_bytes("tasks.big.", None),
            Transport::Tcp,
        ));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 200);
    }

    #[test]
    fn edns_raises_the_udp_limit_up_to_the_cap() {
        // 200 A records take ~3.2 kB: over the cap even with EDNS 4096.
        let capped = decode(handle(
            &table(),
            "n",
            &query_bytes("tasks.big.", Some(4096)),
            Transport::Udp,
        ));
        assert!(capped.metadata.truncation);
        let small = decode(handle(
            &table(),
            "n",
            &query_bytes("big.", Some(4096)),
            Transport::Udp,
        ));
        assert!(!small.metadata.truncation);
        assert_eq!(small.answers.len(), 1);
    }

    #[test]
    fn garbage_is_dropped() {
        for bytes in [&b""[..], b"\x00", b"hello world, not dns", &[0xff; 12]] {
            assert_eq!(handle(&table(), "n", bytes, Transport::Udp), Outcome::Drop);
            assert_eq!(servfail(bytes, Transport::Udp), None);
        }
    }

    #[test]
    fn servfail_echoes_the_question() {
        let bytes = servfail(&query_bytes("example.com.", None), Transport::Udp).expect("servfail");
        let reply = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(reply.metadata.id, 9);
        assert_eq!(reply.queries[0].name().to_ascii(), "example.com.");
    }

    proptest! {
        /// Any bytes: no panic, and whatever we send back decodes as a
        /// response within the UDP limit.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Outcome::Reply(reply) = handle(&table(), "n", &bytes, Transport::Udp) {
                prop_assert!(reply.len() <= usize::from(MAX_UDP_PAYLOAD));
                let decoded = Message::from_vec(&reply).expect("our reply decodes");
                prop_assert_eq!(decoded.metadata.message_type, MessageType::Response);
            }
            let _ = servfail(&bytes, Transport::Tcp);
        }

        /// Valid queries with mutated bytes exercise the decoder beyond the
        /// header.
        #[test]
        fn mutated_queries_never_panic(at in 0usize..40, value in any::<u8>()) {
            let mut bytes = query_bytes("tasks.big.", Some(1232));
            if at < bytes.len() {
                bytes[at] = value;
            }
            let _ = handle(&table(), "n", &bytes, Transport::Udp);
            let _ = handle(&table(), "n", &bytes, Transport::Tcp);
        }
    }
}
