//! Gossip nodes over real UDP/TCP sockets on loopback addresses
//! (127.0.0.x, one per node, same port), in one process.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use shoal_control::api::{GossipConfig, GossipKey};
use shoal_control::objects::MacAddr;
use tokio::sync::watch;

use super::*;
use crate::gossip::table::EndpointRecord;

const KEY_1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn config(keys: &[(u32, &str)], primary: u32, peers: &[SocketAddr]) -> GossipConfig {
    GossipConfig {
        keys: keys
            .iter()
            .map(|(id, key)| GossipKey {
                id: *id,
                key: key.to_string(),
            })
            .collect(),
        primary,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        refused: Vec::new(),
    }
}

fn record(task: &str, last: u8, vtep: Ipv4Addr) -> EndpointRecord {
    let ip = Ipv4Addr::new(10, 0, 0, last);
    EndpointRecord {
        task_id: task.into(),
        service: "web".into(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep,
        ports: Vec::new(),
        vip: None,
        aliases: Vec::new(),
        host_ports: Vec::new(),
    }
}

struct TestNode {
    gossip: Gossip,
    config: watch::Sender<Option<GossipConfig>>,
}

/// A port per test, so tests running at once do not collide.
fn port(offset: u16) -> u16 {
    30_000 + (std::process::id() % 10_000) as u16 + offset * 7
}

/// The test cluster's root, and each node's key and certificate.
fn ca() -> &'static shoal_control::ca::RootCa {
    static CA: std::sync::OnceLock<shoal_control::ca::RootCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| shoal_control::ca::RootCa::generate("c1").unwrap())
}

fn node_keys(name: &str) -> (String, String) {
    let day = Duration::from_secs(86_400);
    let role = shoal_control::objects::Role::Worker;
    ca().issue(name, role, "c1", day).unwrap()
}

async fn start(i: u8, port: u16, first: Option<GossipConfig>) -> TestNode {
    let ip = Ipv4Addr::new(127, 0, 0, i);
    let name = format!("node{i}");
    let mut opts = GossipOptions::new(&name, ip, port);
    opts.table_sync_interval = Duration::from_secs(1);
    let (config, rx) = watch::channel(first);
    let (key, cert) = node_keys(&name);
    let notary = crate::gossip::table::CertNotary::new(ca().cert_pem(), &cert, &key).unwrap();
    let gossip = Gossip::start(opts, Box::new(notary), rx, Vec::new())
        .await
        .unwrap();
    TestNode { gossip, config }
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alive(node: &TestNode) -> usize {
    node.gossip
        .status()
        .await
        .unwrap()
        .count(MemberState::Alive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_share_endpoints_and_rotate_keys() {
    let port = port(0);
    let seed = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port);
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let cfg = config(&[(1, KEY_1)], 1, &[seed]);
        nodes.push(start(i, port, Some(cfg)).await);
    }
    for node in &nodes {
        wait_for("three alive members", async || {
            (alive(node).await == 3).then_some(())
        })
        .await;
    }

    let vtep = Ipv4Addr::new(198, 18, 0, 2);
    nodes[1]
        .gossip
        .publish("app", record("t1", 5, vtep))
        .await
        .unwrap();
    let live = wait_for("the endpoint on node 3", async || {
        let live = nodes[2].gossip.live().await.unwrap();
        live.get("app").filter(|r| !r.is_empty()).cloned()
    })
    .await;
    assert_eq!(live[0].task_id, "t1");
    let lag = nodes[2].gossip.status().await.unwrap().convergence_lag;
    assert_eq!(lag.count, 1);

    // Rotation: accept key 2 everywhere, then seal with it; nobody dies.
    for node in &nodes {
        node.config
            .send(Some(config(&[(1, KEY_1), (2, KEY_2)], 1, &[seed])))
            .unwrap();
    }
    for node in &nodes {
        node.config
            .send(Some(config(&[(1, KEY_1), (2, KEY_2)], 2, &[seed])))
            .unwrap();
    }
    for node in &nodes {
        node.config
            .send(Some(config(&[(2, KEY_2)], 2, &[seed])))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &nodes {
        let status = node.gossip.status().await.unwrap();
        assert_eq!(status.keys, vec![2]);
        assert_eq!(status.primary_key, Some(2));
        assert_eq!(status.count(MemberState::Alive), 3, "{:?}", status.members);
        assert_eq!(status.transitions.down, 0);
    }

    // Withdrawn everywhere.
    assert!(nodes[1].gossip.withdraw("app", "t1").await.unwrap());
    wait_for("the withdrawal on node 1", async || {
        let live = nodes[0].gossip.live().await.unwrap();
        live.get("app").is_some_and(|r| r.is_empty()).then_some(())
    })
    .await;

    // A graceful stop is seen as dead by the others.
    let leaver = nodes.pop().unwrap();
    leaver.gossip.stop().await;
    wait_for("node 3 dead at node 1", async || {
        let status = nodes[0].gossip.status().await.unwrap();
        (status.count(MemberState::Dead) == 1).then_some(())
    })
    .await;
    for node in nodes {
        node.gossip.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_is_kept_out_and_counted() {
    let port = port(1);
    let seed = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)), port);
    let a = start(4, port, Some(config(&[(1, KEY_1)], 1, &[seed]))).await;
    let b = start(5, port, Some(config(&[(1, KEY_2)], 1, &[seed]))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = a.gossip.status().await.unwrap();
    assert_eq!(status.members.len(), 1, "{:?}", status.members);
    assert!(status.decode.unauthenticated > 0, "{:?}", status.decode);
    // No key yet: nothing is sent.
    let c = start(6, port, None).await;
    c.config.send(None).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet = c.gossip.status().await.unwrap();
    assert_eq!(quiet.transport.datagrams_sent, 0);
    assert_eq!(quiet.primary_key, None);
    for node in [a, b, c] {
        node.gossip.stop().await;
    }
}
