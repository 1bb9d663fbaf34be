//! Raft groups of real members in one process: gRPC over 127.0.0.1, stores in
//! temporary directories. A "killed" member stops its Raft and its server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use super::*;
use crate::store::{force_new_cluster, Command, Plain, Response};

type Registry = Arc<Mutex<BTreeMap<u64, RaftNode>>>;

/// A server-side connection that reads at most `bytes_per_sec`: a slow link.
struct Throttled {
    inner: tokio::net::TcpStream,
    bytes_per_sec: u64,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for Throttled {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if let Some(pause) = self.pause.as_mut() {
            if std::future::Future::poll(pause.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        let room = buf.remaining().min(16 << 10);
        let mut limited = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(room));
        let inner = std::pin::Pin::new(&mut self.inner);
        match inner.poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                buf.advance(n);
                let wait = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
                self.pause = Some(Box::pin(tokio::time::sleep(wait)));
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for Throttled {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Throttled {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A group of members, each with a store under `root` and a gRPC server.
struct Cluster {
    root: tempfile::TempDir,
    tuning: RaftTuning,
    addrs: BTreeMap<u64, String>,
    live: Registry,
    servers: BTreeMap<u64, Server>,
}

fn tuning() -> RaftTuning {
    RaftTuning {
        write_timeout: Duration::from_secs(3),
        ..RaftTuning::default()
    }
}

fn set(kind: &str, id: impl ToString, value: serde_json::Value) -> Command {
    Command::Set {
        kind: kind.into(),
        id: id.to_string(),
        value,
        expect_version: None,
    }
}

async fn bind(addr: &str) -> TcpListener {
    // A restarted member takes its old port back; it may linger briefly.
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}

impl Cluster {
    /// Starts `n` members and forms a group: member 1 initializes it and
    /// adds the others as voters.
    async fn new(n: u64, tuning: RaftTuning) -> Cluster {
        let mut c = Cluster::empty(tuning);
        for id in 1..=n {
            c.start(id).await;
        }
        c.node(1).initialize().await.unwrap();
        for id in 2..=n {
            let addr = c.addrs[&id].clone();
            c.node(1).add_voter(id, &addr).await.unwrap();
        }
        c
    }

    fn empty(tuning: RaftTuning) -> Cluster {
        Cluster {
            root: tempfile::tempdir().unwrap(),
            tuning,
            addrs: BTreeMap::new(),
            live: Registry::default(),
            servers: BTreeMap::new(),
        }
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("manager-{id}"))
    }

    fn node(&self, id: u64) -> RaftNode {
        self.live.lock().unwrap()[&id].clone()
    }

    fn live_ids(&self) -> Vec<u64> {
        self.live.lock().unwrap().keys().copied().collect()
    }

    /// Starts member `id` from its store, on its old address if it had one.
    async fn start(&mut self, id: u64) {
        self.start_throttled(id, None).await
    }

    /// [`Cluster::start`], with the member reading from the network at most
    /// `bytes_per_sec` per connection.
    async fn start_throttled(&mut self, id: u64, bytes_per_sec: Option<u64>) {
        let bind_addr = self
            .addrs
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let listener = bind(&bind_addr).await;
        let addr = listener.local_addr().unwrap().to_string();
        self.addrs.insert(id, addr.clone());
        let node = RaftNode::open_tuned(
            &self.dir(id),
            id,
            &addr,
            Arc::new(PlaintextConnector),
            Arc::new(Plain),
            self.tuning.clone(),
        )
        .await
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = TcpListenerStream::new(listener).map(move |conn| {
            conn.map(|inner| {
                // As the daemon's 2377 listener must: Raft messages are small.
                let _ = inner.set_nodelay(true);
                inner
            })
            .map(|inner| Throttled {
                inner,
                bytes_per_sec: bytes_per_sec.unwrap_or(u64::MAX / 2),
                pause: None,
            })
        });
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service(&node))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        self.live.lock().unwrap().insert(id, node);
        self.servers.insert(id, Server { stop, task });
    }

    /// Stops member `id`'s Raft and server, as a crash would.
    async fn kill(&mut self, id: u64) {
        let node = self.live.lock().unwrap().remove(&id).unwrap();
        node.shutdown().await.unwrap();
        drop(node);
        let server = self.servers.remove(&id).unwrap();
        let _ = server.stop.send(());
        let abort = server.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), server.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// The live member that leads with the highest term seen by any live member.
    fn leader(&self) -> Option<u64> {
        let statuses: Vec<RaftStatus> = self
            .live
            .lock()
            .unwrap()
            .values()
            .map(|n| n.metrics())
            .collect();
        let term = statuses.iter().map(|s| s.term).max()?;
        statuses
            .iter()
            .find(|s| s.role == RaftRole::Leader && s.term == term)
            .map(|s| s.raft_id)
    }

    async fn wait_leader(&self, within: Duration) -> u64 {
        let start = Instant::now();
        loop {
            if let Some(id) = self.leader() {
                return id;
            }
            assert!(start.elapsed() < within, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every live member applied at least `index`.
    async fn wait_applied(&self, index: u64, within: Duration) {
        let start = Instant::now();
        loop {
            let behind: Vec<(u64, Option<u64>)> = self
                .live
                .lock()
                .unwrap()
                .iter()
                .map(|(id, n)| (*id, n.read().applied_index()))
                .filter(|(_, applied)| *applied < Some(index))
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < within,
                "members behind index {index}: {behind:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn client(&self) -> Client {
        Client {
            live: self.live.clone(),
        }
    }
}

/// A client that writes through any live member and follows leader hints,
/// as the CLI does through the daemon.
#[derive(Clone)]
struct Client {
    live: Registry,
}

impl Client {
    async fn write(&self, cmd: Command, within: Duration) -> Result<Response, WriteError> {
        let start = Instant::now();
        let mut target = None;
        let mut turn = 0usize;
        loop {
            let node = {
                let live = self.live.lock().unwrap();
                let hinted = target.and_then(|t| live.get(&t).cloned());
                hinted.or_else(|| {
                    turn += 1;
                    live.values().nth(turn % live.len().max(1)).cloned()
                })
            };
            let node = node.expect("no live member");
            let err = match node.write(cmd.clone()).await {
                Ok(resp) => return Ok(resp),
                Err(WriteError::ForwardToLeader { leader_id, .. })
                    if self.live.lock().unwrap().contains_key(&leader_id) =>
                {
                    target = Some(leader_id);
                    continue;
                }
                Err(
                    e @ (WriteError::ForwardToLeader { .. }
                    | WriteError::NoLeader { .. }
                    | WriteError::Timeout { .. }
                    | WriteError::LeaderChanged
                    | WriteError::Fatal(_)),
                ) => e,
                Err(e) => return Err(e),
            };
            if start.elapsed() > within {
                return Err(err);
            }
            target = None;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_forward_and_restart_from_disk() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    assert_eq!(c.node(2).leader().map(|(id, _)| id), Some(leader));
    let members = c.node(leader).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.voter));

    // A follower sends writers to the leader, with its address.
    let follower = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    match c.node(follower).write(set("node", "x", json!(0))).await {
        Err(WriteError::ForwardToLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, leader);
            assert_eq!(leader_addr, c.addrs[&leader]);
        }
        other => panic!("expected a forward to the leader, got {other:?}"),
    }

    let mut last = 0;
    for i in 0..20 {
        match c.node(leader).write(set("node", i, json!({"n": i}))).await {
            Ok(Response::Ok { version }) => last = version,
            other => panic!("write {i}: {other:?}"),
        }
    }
    c.wait_applied(last, Duration::from_secs(5)).await;
    for id in c.live_ids() {
        assert_eq!(c.node(id).read().count("node"), 20, "member {id}");
    }

    // A stopped follower keeps its state on disk and catches up after.
    c.kill(follower).await;
    for i in 20..25 {
        last = match c.client().write(set("node", i, json!({"n": i})), Duration::from_secs(10)).await {
            Ok(Response::Ok { version }) => version,
            other => panic!("write {i}: {other:?}"),
        };
    }
    c.start(follower).await;
    let restarted = c.node(follower).read();
    assert_eq!(restarted.count("node"), 20, "state read back from disk");
    assert_eq!(
        restarted.get_as::<serde_json::Value>("node", "7").unwrap().unwrap().value,
        json!({"n": 7})
    );
    c.wait_applied(last, Duration::from_secs(10)).await;
    assert_eq!(c.node(follower).read().count("node"), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_is_elected_quickly_after_the_leader_dies() {
    let mut c = Cluster::new(3, tuning()).await;
    let mut times = Vec::new();
    for round in 0..7 {
        let old = c.wait_leader(Duration::from_secs(5)).await;
        let old_term = c.node(old).metrics().term;
        let killed_at = Instant::now();
        c.kill(old).await;
        let new = c.wait_leader(Duration::from_secs(5)).await;
        let took = killed_at.elapsed();
        assert_ne!(new, old);
        assert!(c.node(new).metrics().term > old_term);
        println!("failover round {round}: manager {old} -> {new} in {took:?}");
        times.push(took);
        // The new leader commits with one member down, and the old one rejoins.
        let resp = c
            .node(new)
            .write(set("round", round, json!(round)))
            .await
            .unwrap();
        c.start(old).await;
        if let Response::Ok { version } = resp {
            c.wait_applied(version, Duration::from_secs(10)).await;
        }
    }
    let median = median(times.clone());
    println!("leader failover: median {median:?} over {} runs (all: {times:?})", times.len());
    assert!(median < Duration::from_secs(2), "median failover {median:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_writes_fail_fast_and_reads_still_answer() {
    // Once with the leader among the dead, once with it the survivor.
    for leader_dies in [true, false] {
        let mut c = Cluster::new(3, tuning()).await;
        let leader = c.wait_leader(Duration::from_secs(5)).await;
        let Response::Ok { version } = c
            .node(leader)
            .write(set("cluster", "c", json!("before")))
            .await
            .unwrap()
        else {
            panic!("write refused");
        };
        c.wait_applied(version, Duration::from_secs(5)).await;
        let survivor = if leader_dies {
            *c.live_ids().iter().find(|id| **id != leader).unwrap()
        } else {
            leader
        };
        for id in c.live_ids() {
            if id != survivor {
                c.kill(id).await;
            }
        }
        // Past the lease and the election timeout, nobody can lead.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let node = c.node(survivor);
        let start = Instant::now();
        let err = node
            .write(set("cluster", "c", json!("after")))
            .await
            .unwrap_err();
        let took = start.elapsed();
        println!("leader_dies={leader_dies}: write failed after {took:?}: {err}");
        assert!(
            matches!(err, WriteError::NoLeader { .. } | WriteError::Timeout { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("no quorum: 1 of 3 managers reachable"),
            "{err}"
        );
        assert!(took < Duration::from_secs(4), "{took:?}");
        let objects = node.read();
        assert_eq!(
            objects.get("cluster", "c").unwrap().value,
            json!("before"),
            "reads answer without quorum"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_the_loss_of_the_leader() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let client = c.client();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, acked) = (client.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..150 {
                let id = format!("w{w}-{i}");
                match client
                    .write(set("task", &id, json!(i)), Duration::from_secs(10))
                    .await
                {
                    Ok(Response::Ok { .. }) => acked.lock().unwrap().push(id),
                    Ok(other) => panic!("{other:?}"),
                    Err(_) => failed += 1,
                }
            }
            failed
        }));
    }
    // Kill the leader in the middle of the stream.
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill(leader).await;
    let mut failed = 0;
    for w in writers {
        failed += w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!(
        "{} writes acknowledged, {failed} gave up, leader {leader} killed after 150",
        acked.len()
    );
    assert!(acked.len() > 300, "the survivors kept accepting writes");

    let start = Instant::now();
    for id in c.live_ids() {
        loop {
            let objects = c.node(id).read();
            let missing: Vec<&String> = acked
                .iter()
                .filter(|t| objects.get("task", t).is_none())
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "member {id} lacks {} acknowledged writes, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_tolerate_two_losses_but_not_three() {
    let mut c = Cluster::new(5, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let other = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    c.kill(leader).await;
    c.kill(other).await;
    let resp = c
        .client()
        .write(set("service", "web", json!(1)), Duration::from_secs(10))
        .await;
    assert!(matches!(resp, Ok(Response::Ok { .. })), "{resp:?}");

    let third = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(third).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in c.live_ids() {
        let start = Instant::now();
        let err = c
            .node(id)
            .write(set("service", "web", json!(2)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WriteError::NoLeader { .. } | WriteError::Timeout { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("no quorum: 2 of 5 managers reachable"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(4));
        assert_eq!(
            c.node(id).read().get("service", "web").unwrap().value,
            json!(1)
        );
    }
}

/// The state is larger than 16 MiB and the log behind it is purged, so the
/// new member can only catch up through a snapshot, streamed in 1 MiB chunks
/// with a 1 s deadline per chunk, over a link slow enough (8 MiB/s) that the
/// whole transfer takes longer than that: Swarm's fixed deadline failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_voter_catches_up_through_a_large_chunked_snapshot() {
    let tuning = RaftTuning {
        snapshot_every: 8,
        keep_logs_after_snapshot: 0,
        snapshot_chunk_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(10),
        ..tuning()
    };
    let mut c = Cluster::empty(tuning);
    c.start(1).await;
    c.node(1).initialize().await.unwrap();
    let blob = "x".repeat(8 << 10);
    let (batches, per_batch) = (22, 100);
    for b in 0..batches {
        let cmd = Command::Batch(
            (0..per_batch)
                .map(|i| set("blob", format!("{b}-{i}"), json!(blob)))
                .collect(),
        );
        assert!(c.node(1).write(cmd).await.unwrap().is_ok());
    }
    let total = batches * per_batch;
    // Let the policy snapshot and purge.
    let start = Instant::now();
    while c.node(1).metrics().purged_index.is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "log never purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    c.start_throttled(2, Some(8 << 20)).await;
    let started = Instant::now();
    let addr = c.addrs[&2].clone();
    c.node(1).add_voter(2, &addr).await.unwrap();
    let took = started.elapsed();
    let stats = c.node(2).service_stats();
    let chunks = stats
        .snapshot_chunks_received
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes: usize = c
        .node(1)
        .read()
        .list("blob")
        .map(|(_, v)| v.value.as_str().map_or(0, str::len))
        .sum();
    let installed = stats
        .snapshots_installed
        .load(std::sync::atomic::Ordering::Relaxed);
    let largest = stats
        .largest_snapshot_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let longest = stats
        .longest_snapshot_transfer_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "new voter caught up on {bytes} bytes of objects in {took:?}: \
         {installed} snapshot(s) installed, the largest {largest} bytes, {chunks} chunks in all, \
         longest transfer {longest} ms with a 1000 ms limit per chunk"
    );
    // One transfer of 16+ chunks, each within 1 s, the whole taking longer.
    assert!(largest >= 16 << 20, "largest snapshot {largest} bytes");
    assert!(longest > 1000, "longest transfer {longest} ms");
    assert!(bytes >= 16 << 20);
    assert_eq!(c.node(2).read().count("blob"), total);
    assert!(c.node(2).members().iter().all(|m| m.voter));

    // The new voter takes part in later writes.
    let Response::Ok { version } = c
        .node(1)
        .write(set("node", "after", json!(1)))
        .await
        .unwrap()
    else {
        panic!("write refused");
    };
    c.wait_applied(version, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_new_cluster_keeps_every_object_and_accepts_writes_alone() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let mut last = 0;
    for i in 0..10 {
        if let Ok(Response::Ok { version }) = c.node(leader).write(set("service", i, json!(i))).await {
            last = version;
        }
    }
    c.wait_applied(last, Duration::from_secs(5)).await;
    let survivor = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    for id in c.live_ids() {
        c.kill(id).await;
    }

    let addr = c.addrs[&survivor].clone();
    let kept = force_new_cluster(&c.dir(survivor), survivor, &addr, Arc::new(Plain)).unwrap();
    assert_eq!(kept.objects, 10);
    c.start(survivor).await;
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, survivor);
    let node = c.node(survivor);
    assert_eq!(node.read().count("service"), 10);
    assert_eq!(
        node.members(),
        vec![Member {
            raft_id: survivor,
            addr,
            voter: true
        }]
    );
    let resp = node.write(set("service", "new", json!(1))).await.unwrap();
    assert!(matches!(resp, Response::Ok { version } if version > last), "{resp:?}");

    // Another member's id is refused on this directory.
    c.kill(survivor).await;
    let err = force_new_cluster(&c.dir(survivor), survivor + 10, "127.0.0.1:1", Arc::new(Plain))
        .unwrap_err();
    assert!(matches!(err, crate::store::StoreError::WrongMember { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_version_makes_conflicting_writes_fail() {
    let c = Cluster::new(1, tuning()).await;
    let node = c.node(1);
    let create = |v: i64, expect| Command::Set {
        kind: "node".into(),
        id: "n1".into(),
        value: json!(v),
        expect_version: expect,
    };
    let Response::Ok { version: v1 } = node.write(create(1, Some(0))).await.unwrap() else {
        panic!("create refused");
    };
    assert_eq!(
        node.write(create(2, Some(0))).await.unwrap(),
        Response::Conflict {
            kind: "node".into(),
            id: "n1".into(),
            current: Some(v1)
        }
    );
    let Response::Ok { version: v2 } = node.write(create(2, Some(v1))).await.unwrap() else {
        panic!("update refused");
    };
    // Two writers that read v1: the second loses.
    assert!(matches!(
        node.write(create(3, Some(v1))).await.unwrap(),
        Response::Conflict { current: Some(v), .. } if v == v2
    ));
    assert!(matches!(
        node.write(Command::delete("node", "n1", Some(v1))).await.unwrap(),
        Response::Conflict { .. }
    ));
    assert!(node
        .write(Command::delete("node", "n1", Some(v2)))
        .await
        .unwrap()
        .is_ok());
    assert!(matches!(
        node.write(Command::delete("node", "n1", None)).await.unwrap(),
        Response::NotFound { .. }
    ));
    // Refused before reaching the log.
    assert!(matches!(
        node.write(set("", "x", json!(1))).await,
        Err(WriteError::Invalid(_))
    ));
    let huge = set("blob", "big", json!("x".repeat(MAX_COMMAND_BYTES)));
    assert!(matches!(
        node.write(huge).await,
        Err(WriteError::TooLarge { .. })
    ));
}

/// `cargo test -p shoal-control --release -- --ignored --nocapture write_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn write_throughput() {
    let c = Cluster::new(3, tuning()).await;
    let leader = c.node(c.wait_leader(Duration::from_secs(5)).await);
    for writers in [1usize, 64] {
        let run = Duration::from_secs(5);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let leader = leader.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < run {
                    let cmd = set("task", format!("{w}-{n}"), json!({"state": "running", "n": n}));
                    assert!(leader.write(cmd).await.unwrap().is_ok());
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "3 managers, {writers} concurrent writers: {total} writes in {secs:.1}s = {:.0} writes/s",
            total as f64 / secs
        );
    }
}
