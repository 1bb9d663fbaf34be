//! The server on loopback in the test's own namespace (no root needed): real
//! UDP and TCP clients, a fake upstream, timeouts, limits and garbage. The
//! root test in `agent/tests/dns.rs` does the same inside a namespace.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

const NET: &str = "net-a";
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// The longest a client waits for any answer in these tests.
const CLIENT_WAIT: Duration = Duration::from_secs(5);

fn entry(service: &str, vip: Option<Ipv4Addr>, task: &str, ip: Ipv4Addr) -> DnsEntry {
    DnsEntry {
        network: NET.into(),
        service: service.into(),
        vip,
        task: task.into(),
        ip,
    }
}

/// `web` with VIP 10.0.1.2 and two tasks; `big` with 100 tasks.
fn table() -> DnsTable {
    let mut entries = vec![
        entry(
            "web",
            Some([10, 0, 1, 2].into()),
            "web.1.a",
            [10, 0, 1, 3].into(),
        ),
        entry(
            "web",
            Some([10, 0, 1, 2].into()),
            "web.2.b",
            [10, 0, 1, 4].into(),
        ),
    ];
    entries.extend((0..100u32).map(|i| {
        entry(
            "big",
            Some([10, 0, 2, 2].into()),
            &format!("big.{i}.x"),
            Ipv4Addr::from(0x0a00_0300 + i),
        )
    }));
    DnsTable::from_entries(entries)
}

/// A nameserver on loopback that answers every question, UDP and TCP, with
/// an A record of 192.0.2.7 after `delay`, or never when `silent`.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    async fn start(delay: Duration, silent: bool) -> Self {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("upstream udp"));
        let addr = udp.local_addr().expect("upstream addr");
        let tcp = TcpListener::bind(addr)
            .await
            .expect("upstream tcp on the same port");
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&queries);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                tokio::select! {
                    Ok((n, from)) = udp.recv_from(&mut buf) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let Some(reply) = upstream_reply(&buf[..n]) else { continue };
                        if silent {
                            continue;
                        }
                        let udp = Arc::clone(&udp);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = udp.send_to(&reply, from).await;
                        });
                    }
                    Ok((mut stream, _)) = tcp.accept() => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut query = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() { return }
                            let Some(reply) = upstream_reply(&query) else { return };
                            if silent { return }
                            tokio::time::sleep(delay).await;
                            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&reply);
                            let _ = stream.write_all(&framed).await;
                        });
                    }
                }
            }
        });
        FakeUpstream {
            addr,
            queries,
            task,
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn upstream_reply(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    let name = query.queries.first()?.name().clone();
    reply.add_answer(Record::from_rdata(name, 60, RData::A(A(UPSTREAM_ANSWER))));
    reply.to_vec().ok()
}

fn query_bytes(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    message.to_vec().expect("query encodes")
}

async fn udp_query(server: SocketAddrV4, id: u16, name: &str) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    socket
        .send_to(&query_bytes(id, name, RecordType::A), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(CLIENT_WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer for {name} within {CLIENT_WAIT:?}"))
        .expect("recv");
    let reply = Message::from_vec(&buf[..n]).expect("reply decodes");
    assert_eq!(reply.metadata.id, id, "the reply carries the client's id");
    reply
}

async fn tcp_exchange(stream: &mut TcpStream, id: u16, name: &str) -> Message {
    let query = query_bytes(id, name, RecordType::A);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.expect("write");
    let read = async {
        let len = stream.read_u16().await?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(CLIENT_WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("no TCP answer for {name} within {CLIENT_WAIT:?}"))
        .expect("read");
    let reply = Message::from_vec(&reply).expect("reply decodes");
    assert_eq!(reply.metadata.id, id);
    reply
}

async fn tcp_query(server: SocketAddrV4, id: u16, name: &str) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    tcp_exchange(&mut stream, id, name).await
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

struct Running {
    server: DnsServer,
    tables: watch::Sender<Arc<DnsTable>>,
}

async fn start(upstreams: Vec<SocketAddr>, tune: impl FnOnce(&mut DnsServerConfig)) -> Running {
    let (tables, rx) = watch::channel(Arc::new(table()));
    let mut config = DnsServerConfig::new(
        NET,
        None,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        upstreams,
    );
    tune(&mut config);
    let server = DnsServer::start(config, rx).await.expect("server starts");
    Running { server, tables }
}

#[tokio::test]
async fn dns_server_answers_over_udp_and_tcp() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    assert_ne!(addr.port(), 0);
    let udp = udp_query(addr, 1, "web.").await;
    assert_eq!(a_records(&udp), vec![Ipv4Addr::new(10, 0, 1, 2)]);
    let tcp = tcp_query(addr, 2, "tasks.web.").await;
    let mut tasks = a_records(&tcp);
    tasks.sort();
    assert_eq!(
        tasks,
        vec![Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(10, 0, 1, 4)]
    );
    run.server.stop().await;
}

#[tokio::test]
async fn dns_server_truncates_over_udp_and_answers_whole_over_tcp() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    let udp = udp_query(addr, 1, "tasks.big.").await;
    assert!(
        udp.metadata.truncation,
        "100 A records do not fit in 512 bytes"
    );
    let tcp = tcp_query(addr, 1, "tasks.big.").await;
    assert_eq!(a_records(&tcp).len(), 100);
}

#[tokio::test]
async fn dns_server_forwards_unknown_names_over_udp_and_tcp() {
    let upstream = FakeUpstream::start(Duration::ZERO, false).await;
    let run = start(vec![upstream.addr], |_| {}).await;
    let addr = run.server.local_addr();
    let udp = udp_query(addr, 0x1234, "example.com.").await;
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&udp), vec![UPSTREAM_ANSWER]);
    let tcp = tcp_query(addr, 0x4321, "example.com.").await;
    assert_eq!(a_records(&tcp), vec![UPSTREAM_ANSWER]);
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 2);
    // Our own names never reach upstream.
    udp_query(addr, 5, "web.").await;
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dns_server_answers_servfail_when_upstream_is_silent() {
    let upstream = FakeUpstream::start(Duration::ZERO, true).await;
    let run = start(vec![upstream.addr], |c| {
        c.forward_timeout = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let reply = udp_query(run.server.local_addr(), 9, "example.com.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let tcp = tcp_query(run.server.local_addr(), 10, "example.com.").await;
    assert_eq!(tcp.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn dns_server_answers_servfail_without_upstreams() {
    let run = start(vec![], |_| {}).await;
    let reply = udp_query(run.server.local_addr(), 9, "example.com.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn dns_server_moves_on_at_once_from_a_refusing_upstream() {
    let closed = {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        socket.local_addr().expect("addr")
    };
    let upstream = FakeUpstream::start(Duration::ZERO, false).await;
    let run = start(vec![closed, upstream.addr], |c| {
        c.forward_timeout = Duration::from_secs(4)
    })
    .await;
    let started = Instant::now();
    let reply = udp_query(run.server.local_addr(), 3, "example.com.").await;
    assert_eq!(a_records(&reply), vec![UPSTREAM_ANSWER]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the refusal was not noticed: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_local_answers_are_not_held_up_by_slow_forwards() {
    let upstream = FakeUpstream::start(Duration::from_millis(700), false).await;
    let run = start(vec![upstream.addr], |_| {}).await;
    let addr = run.server.local_addr();
    let forwards: Vec<_> = (0..50u16)
        .map(|i| {
            tokio::spawn(async move { udp_query(addr, i, &format!("host{i}.example.")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let locals: Vec<_> = (0..50u16)
        .map(|i| tokio::spawn(async move { udp_query(addr, 1000 + i, "web.").await }))
        .collect();
    for local in locals {
        let reply = local.await.expect("local query task");
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 0, 1, 2)]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "local answers waited for forwards: {:?}",
        started.elapsed()
    );
    for forward in forwards {
        let reply = forward.await.expect("forward task");
        assert_eq!(a_records(&reply), vec![UPSTREAM_ANSWER]);
    }
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_forwards_over_the_limit_get_servfail_at_once() {
    let upstream = FakeUpstream::start(Duration::from_millis(1500), false).await;
    let run = start(vec![upstream.addr], |c| c.max_forwards = 2).await;
    let addr = run.server.local_addr();
    let started = Instant::now();
    let queries: Vec<_> = (0..2u16)
        .map(|i| tokio::spawn(async move { udp_query(addr, i, "slow.example.").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 2..5u16 {
        let reply = udp_query(addr, i, "over.example.").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
    assert!(started.elapsed() < Duration::from_millis(1000));
    for query in queries {
        let reply = query.await.expect("query task");
        assert_eq!(
            a_records(&reply),
            vec![UPSTREAM_ANSWER],
            "the first two still succeed"
        );
    }
}

#[tokio::test]
async fn dns_server_drops_garbage_and_keeps_serving() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let mut response = Message::from_vec(&query_bytes(4, "web.", RecordType::A)).expect("decodes");
    response.metadata.message_type = MessageType::Response;
    let response = response.to_vec().expect("encodes");
    for garbage in [
        &b""[..],
        b"\x01",
        b"definitely not a DNS message",
        &[0xff; 300],
        &response,
    ] {
        socket.send_to(garbage, addr).await.expect("send");
    }
    let mut buf = [0u8; 512];
    let nothing =
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "garbage got a reply");

    // A TCP frame of garbage closes that connection only.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"\x00\x05hello").await.expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(CLIENT_WAIT, stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");

    assert_eq!(
        a_records(&udp_query(addr, 5, "web.").await),
        vec![Ipv4Addr::new(10, 0, 1, 2)]
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for id in 6..9 {
        let reply = tcp_exchange(&mut stream, id, "web.").await;
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(10, 0, 1, 2)],
            "query {id} on one connection"
        );
    }
}

#[tokio::test]
async fn dns_server_sees_table_updates_at_the_next_query() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    assert_eq!(
        a_records(&udp_query(addr, 1, "web.").await),
        vec![Ipv4Addr::new(10, 0, 1, 2)]
    );
    let moved = DnsTable::from_entries([
        entry(
            "web",
            Some([10, 0, 1, 9].into()),
            "web.1.a",
            [10, 0, 1, 3].into(),
        ),
        entry("db", None, "db.1.c", [10, 0, 1, 20].into()),
    ]);
    run.tables.send_replace(Arc::new(moved));
    assert_eq!(
        a_records(&udp_query(addr, 2, "web.").await),
        vec![Ipv4Addr::new(10, 0, 1, 9)]
    );
    assert_eq!(
        a_records(&udp_query(addr, 3, "db.").await),
        vec![Ipv4Addr::new(10, 0, 1, 20)]
    );
}

#[tokio::test]
async fn dns_server_stop_closes_its_sockets() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    udp_query(addr, 1, "web.").await;
    run.server.stop().await;
    UdpSocket::bind(addr)
        .await
        .expect("the UDP port is free again");
    TcpListener::bind(addr)
        .await
        .expect("the TCP port is free again");
}

#[tokio::test]
async fn dns_server_dropped_closes_its_sockets() {
    let run = start(vec![], |_| {}).await;
    let addr = run.server.local_addr();
    drop(run);
    // Aborted tasks release their sockets when the runtime next polls them.
    let deadline = Instant::now() + CLIENT_WAIT;
    while UdpSocket::bind(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the UDP port stayed bound after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dns_server_bind_error_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let Ok(SocketAddr::V4(addr)) = taken.local_addr() else {
        panic!("v4 address");
    };
    let (_tx, rx) = watch::channel(Arc::new(table()));
    let Err(error) = DnsServer::start(DnsServerConfig::new(NET, None, addr, vec![]), rx).await
    else {
        panic!("binding a taken port must fail");
    };
    let message = error.to_string();
    assert!(message.contains(&format!("udp {addr}")), "{message}");
    assert!(message.contains("agent's namespace"), "{message}");
}
