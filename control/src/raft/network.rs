//! The client half of Raft between managers: openraft's network factory over
//! the `shoal.raft.Raft` gRPC service, on channels the caller's
//! [`PeerConnector`] builds (mTLS in the daemon, plaintext in tests).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::callers::Transport;
use crate::proto::raft::raft_client::RaftClient;
use crate::proto::raft::{snapshot_chunk, RaftMessage, SnapshotChunk};
use crate::store::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};

/// The largest gRPC message a Raft peer sends or accepts (a batch of log
/// entries: at most `max_payload_entries` commands of at most
/// [`super::MAX_COMMAND_BYTES`] each, plus framing).
pub(crate) const MAX_MESSAGE_BYTES: usize = 96 << 20;

/// How long to wait for a TCP (and TLS) connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// No append or vote RPC is given less than this, whatever openraft asks:
/// a follower's fsync alone can take tens of milliseconds.
const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(500);

/// The slowest rate at which a peer is expected to install a received
/// snapshot (parse it and rewrite its store).
pub(crate) const INSTALL_BYTES_PER_SEC: u64 = 2 << 20;

/// Builds the channel to another manager. The daemon's connector adds mutual
/// TLS; tests use [`PlaintextConnector`].
pub trait PeerConnector: Send + Sync + 'static {
    /// The endpoint of the manager advertised at `addr` (`host:port`).
    fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error>;

    /// How managers reach each other: with mutual TLS (the default), this
    /// member's Raft service checks every caller's certificate.
    fn transport(&self) -> Transport {
        Transport::MutualTls
    }
}

/// Plain HTTP/2 with no TLS. For tests and local experiments only: managers
/// talk mTLS in production.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlaintextConnector;

impl PeerConnector for PlaintextConnector {
    fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        Endpoint::from_shared(format!("http://{addr}"))
    }

    fn transport(&self) -> Transport {
        Transport::Plaintext
    }
}

/// When this manager last exchanged a Raft message with each peer, in either
/// direction: what "reachable" means in errors and metrics.
#[derive(Default)]
pub(crate) struct PeerContacts {
    map: Mutex<HashMap<u64, Contact>>,
}

#[derive(Clone, Copy, Default)]
struct Contact {
    last_ok: Option<Instant>,
    last_err: Option<Instant>,
}

impl PeerContacts {
    pub(crate) fn ok(&self, peer: u64) {
        self.with(peer, |c| c.last_ok = Some(Instant::now()));
    }

    pub(crate) fn err(&self, peer: u64) {
        self.with(peer, |c| c.last_err = Some(Instant::now()));
    }

    fn with(&self, peer: u64, f: impl FnOnce(&mut Contact)) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(peer).or_default());
    }

    /// True if `peer` answered (or spoke) within `window` and nothing failed since.
    pub(crate) fn reachable(&self, peer: u64, window: Duration) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&peer).is_some_and(|c| {
            c.last_ok
                .is_some_and(|ok| ok.elapsed() < window && c.last_err.is_none_or(|err| err <= ok))
        })
    }
}

/// Which connection a client uses: snapshots get their own, so that a long
/// transfer never queues heartbeats behind it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Replication,
    Snapshot,
}

/// openraft's network factory: one client per target, sharing channels.
#[derive(Clone)]
pub(crate) struct Network {
    self_id: u64,
    connector: Arc<dyn PeerConnector>,
    channels: Arc<Mutex<HashMap<(String, Lane), Channel>>>,
    contacts: Arc<PeerContacts>,
}

impl Network {
    pub(crate) fn new(
        self_id: u64,
        connector: Arc<dyn PeerConnector>,
        contacts: Arc<PeerContacts>,
    ) -> Network {
        Network {
            self_id,
            connector,
            channels: Arc::default(),
            contacts,
        }
    }

    fn client(&self, target: u64, node: &BasicNode, lane: Lane) -> PeerClient {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let key = (node.addr.clone(), lane);
        let channel = match channels.get(&key) {
            Some(channel) => Ok(channel.clone()),
            None => match self.connector.endpoint(&node.addr) {
                Ok(endpoint) => {
                    let channel = endpoint
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(5))
                        .keep_alive_timeout(Duration::from_secs(5))
                        .connect_lazy();
                    channels.insert(key, channel.clone());
                    Ok(channel)
                }
                Err(e) => Err(format!(
                    "bad address `{}` for manager {target}: {e}",
                    node.addr
                )),
            },
        };
        PeerClient {
            self_id: self.self_id,
            target,
            client: channel.map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }),
            contacts: self.contacts.clone(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        self.client(target, node, Lane::Replication)
    }

    async fn new_snapshot_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        self.client(target, node, Lane::Snapshot)
    }
}

/// The first chunk of a snapshot transfer.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// Total bytes of data that follow.
    pub size: u64,
}

/// Sends Raft RPCs to one peer.
pub(crate) struct PeerClient {
    self_id: u64,
    target: u64,
    client: Result<RaftClient<Channel>, String>,
    contacts: Arc<PeerContacts>,
}

type RpcError = RPCError<TypeConfig>;

fn rpc_error(status: tonic::Status) -> RpcError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn streaming_error(e: RpcError) -> StreamingError<TypeConfig> {
    StreamingError::from(e)
}

impl PeerClient {
    fn raft_client(&self) -> Result<RaftClient<Channel>, RpcError> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    fn timeout(&self, action: RPCTypes, after: Duration) -> Timeout<TypeConfig> {
        Timeout {
            action,
            id: self.self_id,
            target: self.target,
            timeout: after,
        }
    }

    /// Records the outcome of an exchange with the peer.
    fn note<T, E>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.contacts.ok(self.target),
            Err(_) => self.contacts.err(self.target),
        }
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcError> {
        let mut client = self.raft_client()?;
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { json };
        let after = option.soft_ttl().max(MIN_RPC_TIMEOUT);
        let call = async move {
            match action {
                RPCTypes::Vote => client.vote(msg).await,
                _ => client.append_entries(msg).await,
            }
        };
        let result = match tokio::time::timeout(after, call).await {
            Err(_) => Err(RPCError::Timeout(self.timeout(action, after))),
            Ok(Err(status)) => Err(rpc_error(status)),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        };
        self.note(&result);
        let resp = result?;
        serde_json::from_slice(&resp.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcError> {
        self.unary(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        self.unary(RPCTypes::Vote, &rpc, &option).await
    }

    /// Streams the snapshot in chunks. Each chunk must be taken by the peer
    /// within the chunk timeout (openraft's `install_snapshot_timeout`); once
    /// all are sent, the peer has one chunk timeout plus one second per
    /// [`INSTALL_BYTES_PER_SEC`] to install it. The transfer as a whole has
    /// no deadline.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.raft_client().map_err(streaming_error)?;
        let chunk_size = option.snapshot_chunk_size().unwrap_or(1 << 20).max(1);
        let chunk_timeout = option.hard_ttl();
        let data = snapshot.snapshot;
        let install_timeout = chunk_timeout
            + Duration::from_secs_f64(data.len() as f64 / INSTALL_BYTES_PER_SEC as f64);
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
            size: data.len() as u64,
        };
        let header = serde_json::to_vec(&header).map_err(|e| NetworkError::new(&e))?;

        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(1);
        let feed = async move {
            let parts = std::iter::once(snapshot_chunk::Part::Meta(header)).chain(
                data.chunks(chunk_size)
                    .map(|c| snapshot_chunk::Part::Data(c.to_vec())),
            );
            for part in parts {
                let chunk = SnapshotChunk { part: Some(part) };
                match tokio::time::timeout(chunk_timeout, tx.send(chunk)).await {
                    Err(_) => return Err(()),
                    // The call ended early: its result says why.
                    Ok(Err(_)) => return Ok(()),
                    Ok(Ok(())) => {}
                }
            }
            Ok(())
        };
        let call = client.install_snapshot(ReceiverStream::new(rx));
        tokio::pin!(feed, call, cancel);

        let stalled = |this: &Self| {
            this.contacts.err(this.target);
            StreamingError::Timeout(this.timeout(RPCTypes::InstallSnapshot, chunk_timeout))
        };
        // Phase 1: send every chunk, unless the call ends or is cancelled.
        let early = tokio::select! {
            result = &mut call => Some(result),
            fed = &mut feed => match fed {
                Ok(()) => None,
                Err(()) => return Err(stalled(self)),
            },
            closed = &mut cancel => return Err(StreamingError::Closed(closed)),
        };
        // Phase 2: wait for the peer to install what it received.
        let result = match early {
            Some(result) => result,
            None => {
                tokio::select! {
                    result = tokio::time::timeout(install_timeout, &mut call) => match result {
                        Ok(result) => result,
                        Err(_) => {
                            self.contacts.err(self.target);
                            return Err(StreamingError::Timeout(
                                self.timeout(RPCTypes::InstallSnapshot, install_timeout),
                            ));
                        }
                    },
                    closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                }
            }
        };
        self.note(&result);
        let resp = result
            .map_err(|s| streaming_error(rpc_error(s)))?
            .into_inner();
        serde_json::from_slice(&resp.json).map_err(|e| NetworkError::new(&e).into())
    }
}
