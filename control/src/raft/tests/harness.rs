//! The test bench: members in one process with real gRPC over 127.0.0.1,
//! stores in temporary directories, an optional slow link, and a client
//! that follows leader hints. A "killed" member stops its Raft and server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::raft::*;
use crate::store::{Command, Plain, Response};

pub(super) type Registry = Arc<Mutex<BTreeMap<u64, RaftNode>>>;

/// A server-side connection that reads at most `bytes_per_sec`: a slow link.
pub(super) struct Throttled {
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

pub(super) struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A group of members, each with a store under `root` and a gRPC server.
pub(super) struct Cluster {
    pub root: tempfile::TempDir,
    pub tuning: RaftTuning,
    pub addrs: BTreeMap<u64, String>,
    pub live: Registry,
    servers: BTreeMap<u64, Server>,
}

pub(super) fn tuning() -> RaftTuning {
    RaftTuning {
        write_timeout: Duration::from_secs(3),
        ..RaftTuning::default()
    }
}

pub(super) fn set(kind: &str, id: impl ToString, value: serde_json::Value) -> Command {
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
    pub async fn new(n: u64, tuning: RaftTuning) -> Cluster {
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

    pub fn empty(tuning: RaftTuning) -> Cluster {
        Cluster {
            root: tempfile::tempdir().unwrap(),
            tuning,
            addrs: BTreeMap::new(),
            live: Registry::default(),
            servers: BTreeMap::new(),
        }
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("manager-{id}"))
    }

    pub fn node(&self, id: u64) -> RaftNode {
        self.live.lock().unwrap()[&id].clone()
    }

    pub fn live_ids(&self) -> Vec<u64> {
        self.live.lock().unwrap().keys().copied().collect()
    }

    /// Starts member `id` from its store, on its old address if it had one.
    pub async fn start(&mut self, id: u64) {
        self.start_throttled(id, None).await
    }

    /// [`Cluster::start`], with the member reading from the network at most
    /// `bytes_per_sec` per connection.
    pub async fn start_throttled(&mut self, id: u64, bytes_per_sec: Option<u64>) {
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
            conn.inspect(|inner| {
                // As the daemon's 2377 listener must: Raft messages are small.
                let _ = inner.set_nodelay(true);
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
    pub async fn kill(&mut self, id: u64) {
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
    pub fn leader(&self) -> Option<u64> {
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

    pub async fn wait_leader(&self, within: Duration) -> u64 {
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
    pub async fn wait_applied(&self, index: u64, within: Duration) {
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

    pub fn client(&self) -> Client {
        Client {
            live: self.live.clone(),
        }
    }
}

/// A client that writes through any live member and follows leader hints,
/// as the CLI does through the daemon.
#[derive(Clone)]
pub(super) struct Client {
    live: Registry,
}

impl Client {
    pub async fn write(&self, cmd: Command, within: Duration) -> Result<Response, WriteError> {
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
