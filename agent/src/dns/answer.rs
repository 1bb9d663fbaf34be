//! The resolver's rules: what a query asked on one network gets from the
//! [`DnsTable`], or that it must go upstream. Pure: messages in, messages out.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::table::{DnsTable, NetworkRecords, Reverse, ServiceRecord};

/// The TTL of every record we answer. Swarm uses 600 s and clients then keep
/// a VIP or a task address that has moved for up to ten minutes (worst with
/// `tasks.NAME`, whose addresses change with every rescheduling). Our answers
/// come from a local table over a local link, so asking again is cheap: 2 s
/// keeps a burst of lookups from one caching client (nscd, a JVM, a
/// connection pool) from re-asking each time, and lets a change be seen
/// almost at once. Negative answers carry no SOA, so they are never cached.
pub const TTL: u32 = 2;

/// The largest UDP answer we send, whatever the client advertises: the
/// DNS-flag-day size, which fits an overlay's MTU without fragmenting.
/// Larger answers go out truncated and the client asks again over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Send this response.
    Reply(Message),
    /// Not ours: send the query to the upstream nameservers as it is.
    Forward,
    /// Not a query (a response, most likely spoofed or looped): send nothing,
    /// so two servers can never bounce messages at each other.
    Drop,
}

/// Answers `query`, asked on `network`.
///
/// - `NAME` (any case, with or without the trailing dot): the service's VIP,
///   or its task addresses when it has no VIP (`dnsrr`);
/// - `tasks.NAME`: every task address of the service;
/// - a reverse lookup (`d.c.b.a.in-addr.arpa`) of a VIP or a task address:
///   the service's or the task's name; of another address inside the
///   network's subnet: NXDOMAIN;
/// - any other type (AAAA, MX...) for a name we know: NOERROR with no records,
///   so the client goes on to ask for A instead of giving up on the name;
/// - everything else, and everything on a network we have no records for,
///   is forwarded.
///
/// Multiple addresses are rotated by the query id, so successive queries
/// spread clients over the tasks while a given query always gets the same
/// order.
pub fn answer(table: &DnsTable, network: &str, query: &Message) -> Answer {
    if query.metadata.message_type != MessageType::Query {
        return Answer::Drop;
    }
    if query.metadata.op_code != OpCode::Query {
        return Answer::Reply(response(query, ResponseCode::NotImp, Vec::new()));
    }
    let [question] = query.queries.as_slice() else {
        return Answer::Reply(response(query, ResponseCode::FormErr, Vec::new()));
    };
    if question.query_class() != DNSClass::IN {
        return Answer::Forward;
    }
    let Some(records) = table.networks.get(network) else {
        return Answer::Forward;
    };
    let name = question.name();
    let key = lookup_key(name);
    let qtype = question.query_type();
    let wants = |rtype: RecordType| qtype == rtype || qtype == RecordType::ANY;

    if let Some(ip) = in_addr_arpa(&key) {
        return match records.reverse(ip) {
            Reverse::Names(names) if wants(RecordType::PTR) => {
                let answers = names
                    .into_iter()
                    .filter_map(|target| Name::from_ascii(format!("{target}.")).ok())
                    .map(|target| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(target))))
                    .collect();
                Answer::Reply(response(query, ResponseCode::NoError, answers))
            }
            Reverse::Names(_) => Answer::Reply(response(query, ResponseCode::NoError, Vec::new())),
            Reverse::InSubnet => Answer::Reply(response(query, ResponseCode::NXDomain, Vec::new())),
            Reverse::Foreign => Answer::Forward,
        };
    }

    let Some(mut addresses) = addresses(records, &key) else {
        return Answer::Forward;
    };
    if !wants(RecordType::A) {
        return Answer::Reply(response(query, ResponseCode::NoError, Vec::new()));
    }
    if !addresses.is_empty() {
        let turn = usize::from(query.metadata.id) % addresses.len();
        addresses.rotate_left(turn);
    }
    let answers = addresses
        .into_iter()
        .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip))))
        .collect();
    Answer::Reply(response(query, ResponseCode::NoError, answers))
}

/// The addresses `key` resolves to on this network, `None` when the name is
/// not ours. A service literally named `tasks.x` wins over `tasks.` + `x`.
fn addresses(records: &NetworkRecords, key: &str) -> Option<Vec<Ipv4Addr>> {
    let task_ips =
        |service: &ServiceRecord| service.tasks.iter().map(|(_, ip)| *ip).collect::<Vec<_>>();
    if let Some(service) = records.service(key) {
        return Some(match service.vip {
            Some(vip) => vec![vip],
            None => task_ips(service),
        });
    }
    let service = records.service(key.strip_prefix("tasks.")?)?;
    Some(task_ips(service))
}

/// A name as the table keys it: lower case, no trailing dot.
fn lookup_key(name: &Name) -> String {
    let mut key = name.to_lowercase().to_ascii();
    if key.ends_with('.') {
        key.pop();
    }
    key
}

/// The address of a full `d.c.b.a.in-addr.arpa` name; partial or malformed
/// reverse names are `None` (and so handled like any other unknown name).
fn in_addr_arpa(key: &str) -> Option<Ipv4Addr> {
    let labels = key.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = labels.split('.');
    for octet in octets.iter_mut().rev() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// A response to `query` with `code` and `answers`: the question echoed, RD
/// and CD copied, RA set (we recurse by forwarding), AA set on what we
/// answer from the table, and an OPT record when the client sent one.
pub(crate) fn response(query: &Message, code: ResponseCode, answers: Vec<Record>) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&query.metadata);
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = matches!(code, ResponseCode::NoError | ResponseCode::NXDomain);
    reply.metadata.response_code = code;
    reply.add_queries(query.queries.iter().cloned());
    reply.add_answers(answers);
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::Query;

    use super::*;
    use crate::dns::table::DnsEntry;

    const NET: &str = "net-a";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    /// `web` (VIP 10.0.1.2, tasks .3 .4 .5) and `db` (dnsrr, tasks .6 .7) on
    /// `net-a` (10.0.1.0/24); `api` (VIP 10.0.2.2) on `net-b` only.
    fn table() -> DnsTable {
        let entry =
            |network: &str, service: &str, vip: Option<&str>, task: &str, addr: &str| DnsEntry {
                network: network.into(),
                service: service.into(),
                vip: vip.map(ip),
                task: task.into(),
                ip: ip(addr),
            };
        DnsTable::from_entries([
            entry(NET, "Web", Some("10.0.1.2"), "web.1.aaa", "10.0.1.3"),
            entry(NET, "web", Some("10.0.1.2"), "web.2.bbb", "10.0.1.4"),
            entry(NET, "web", Some("10.0.1.2"), "web.3.ccc", "10.0.1.5"),
            entry(NET, "db", None, "db.1.ddd", "10.0.1.6"),
            entry(NET, "db", None, "db.2.eee", "10.0.1.7"),
            entry("net-b", "api", Some("10.0.2.2"), "api.1.fff", "10.0.2.3"),
        ])
        .with_subnet(NET, "10.0.1.0/24".parse().expect("subnet"))
        .with_subnet("net-b", "10.0.2.0/24".parse().expect("subnet"))
    }

    fn query(id: u16, name: &str, rtype: RecordType) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
        message
    }

    fn reply(answer: Answer) -> Message {
        match answer {
            Answer::Reply(message) => message,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("expected A, got {other:?}"),
            })
            .collect()
    }

    fn sorted(mut ips: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
        ips.sort();
        ips
    }

    #[test]
    fn service_name_answers_its_vip() {
        let q = query(7, "web.", RecordType::A);
        let r = reply(answer(&table(), NET, &q));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.id, 7);
        assert!(r.metadata.authoritative && r.metadata.recursion_available);
        assert!(r.metadata.recursion_desired, "RD is copied from the query");
        assert_eq!(r.queries, q.queries, "the question is echoed");
        assert_eq!(a_records(&r), vec![ip("10.0.1.2")]);
        assert_eq!(r.answers[0].ttl, TTL);
        assert_eq!(r.answers[0].name, Name::from_str("web.").expect("name"));
    }

    #[test]
    fn tasks_name_answers_every_task_address_rotated_by_id() {
        let all = vec![ip("10.0.1.3"), ip("10.0.1.4"), ip("10.0.1.5")];
        let first = a_records(&reply(answer(
            &table(),
            NET,
            &query(0, "tasks.web.", RecordType::A),
        )));
        assert_eq!(first, all, "id 0 keeps the table's order");
        let second = a_records(&reply(answer(
            &table(),
            NET,
            &query(1, "tasks.web.", RecordType::A),
        )));
        assert_eq!(second, vec![all[1], all[2], all[0]]);
        let again = a_records(&reply(answer(
            &table(),
            NET,
            &query(1, "tasks.web.", RecordType::A),
        )));
        assert_eq!(again, second, "the same id gets the same order");
    }

    #[test]
    fn names_are_case_insensitive_with_or_without_trailing_dot() {
        for name in ["web", "web.", "WEB.", "wEb", "TASKS.Web."] {
            let r = reply(answer(&table(), NET, &query(3, name, RecordType::A)));
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(!r.answers.is_empty(), "{name} resolves");
        }
    }

    #[test]
    fn aaaa_and_other_types_for_a_known_name_are_empty_noerror() {
        for (name, rtype) in [
            ("web.", RecordType::AAAA),
            ("tasks.web.", RecordType::AAAA),
            ("db.", RecordType::MX),
        ] {
            let r = reply(answer(&table(), NET, &query(3, name, rtype)));
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NoError,
                "{name} {rtype}"
            );
            assert!(r.answers.is_empty(), "{name} {rtype}");
        }
    }

    #[test]
    fn any_answers_the_a_records() {
        let r = reply(answer(&table(), NET, &query(0, "web.", RecordType::ANY)));
        assert_eq!(a_records(&r), vec![ip("10.0.1.2")]);
    }

    #[test]
    fn unknown_names_are_forwarded() {
        for name in [
            "example.com.",
            "tasks.",
            "tasks.nothing.",
            "web.example.com.",
            ".",
        ] {
            assert_eq!(
                answer(&table(), NET, &query(1, name, RecordType::A)),
                Answer::Forward,
                "{name}"
            );
        }
    }

    #[test]
    fn another_network_does_not_see_the_service() {
        assert_eq!(
            answer(&table(), "net-b", &query(1, "web.", RecordType::A)),
            Answer::Forward
        );
        assert_eq!(
            answer(&table(), NET, &query(1, "api.", RecordType::A)),
            Answer::Forward
        );
        let api = reply(answer(&table(), "net-b", &query(1, "api.", RecordType::A)));
        assert_eq!(a_records(&api), vec![ip("10.0.2.2")]);
        assert_eq!(
            answer(
                &table(),
                "no-such-network",
                &query(1, "web.", RecordType::A)
            ),
            Answer::Forward
        );
    }

    #[test]
    fn dnsrr_service_answers_its_tasks() {
        let r = reply(answer(&table(), NET, &query(0, "db.", RecordType::A)));
        assert_eq!(sorted(a_records(&r)), vec![ip("10.0.1.6"), ip("10.0.1.7")]);
        let tasks = reply(answer(&table(), NET, &query(0, "tasks.db.", RecordType::A)));
        assert_eq!(a_records(&tasks), a_records(&r));
    }

    #[test]
    fn service_without_tasks_is_known_but_empty() {
        let mut table = table();
        let records = table.networks.get_mut(NET).expect("net-a");
        records.services.insert(
            "idle".into(),
            ServiceRecord {
                vip: None,
                tasks: vec![],
            },
        );
        let r = reply(answer(&table, NET, &query(0, "idle.", RecordType::A)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    fn ptr_targets(message: &Message) -> Vec<String> {
        message
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(ptr) => ptr.0.to_ascii(),
                other => panic!("expected PTR, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn reverse_lookup_of_a_vip_names_the_service() {
        let r = reply(answer(
            &table(),
            NET,
            &query(1, "2.1.0.10.in-addr.arpa.", RecordType::PTR),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ptr_targets(&r), vec!["web."]);
    }

    #[test]
    fn reverse_lookup_of_a_task_names_the_task() {
        let r = reply(answer(
            &table(),
            NET,
            &query(1, "4.1.0.10.IN-ADDR.ARPA", RecordType::PTR),
        ));
        assert_eq!(ptr_targets(&r), vec!["web.2.bbb."]);
    }

    #[test]
    fn reverse_lookup_of_an_unused_subnet_address_is_nxdomain() {
        let r = reply(answer(
            &table(),
            NET,
            &query(1, "99.1.0.10.in-addr.arpa.", RecordType::PTR),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn reverse_lookups_outside_the_network_are_forwarded() {
        for name in [
            "8.8.8.8.in-addr.arpa.",
            "2.2.0.10.in-addr.arpa.", // api's VIP, but api is on net-b
            "1.0.10.in-addr.arpa.",   // partial
            "x.1.0.10.in-addr.arpa.",
            "256.1.0.10.in-addr.arpa.",
            "5.4.2.1.0.10.in-addr.arpa.",
        ] {
            assert_eq!(
                answer(&table(), NET, &query(1, name, RecordType::PTR)),
                Answer::Forward,
                "{name}"
            );
        }
    }

    #[test]
    fn a_query_for_a_known_reverse_name_is_empty_noerror() {
        let r = reply(answer(
            &table(),
            NET,
            &query(1, "2.1.0.10.in-addr.arpa.", RecordType::A),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn responses_are_dropped_and_odd_queries_refused_politely() {
        let mut response = query(1, "web.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(answer(&table(), NET, &response), Answer::Drop);

        let mut notify = query(1, "web.", RecordType::A);
        notify.metadata.op_code = OpCode::Notify;
        let r = reply(answer(&table(), NET, &notify));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

        let empty = Message::new(1, MessageType::Query, OpCode::Query);
        let r = reply(answer(&table(), NET, &empty));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

        let mut two = query(1, "web.", RecordType::A);
        two.add_query(Query::query(
            Name::from_str("db.").expect("name"),
            RecordType::A,
        ));
        let r = reply(answer(&table(), NET, &two));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn other_classes_are_forwarded() {
        let mut q = query(1, "version.bind.", RecordType::TXT);
        q.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(answer(&table(), NET, &q), Answer::Forward);
    }

    #[test]
    fn edns_queries_get_an_opt_record_back() {
        let mut q = query(1, "web.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let r = reply(answer(&table(), NET, &q));
        assert_eq!(
            r.edns.as_ref().map(Edns::max_payload),
            Some(MAX_UDP_PAYLOAD)
        );
        let plain = reply(answer(&table(), NET, &query(1, "web.", RecordType::A)));
        assert!(plain.edns.is_none());
    }
}
