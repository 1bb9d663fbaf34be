//! The server half of Raft between managers: the `shoal.raft.Raft` gRPC
//! service, which the daemon adds to its 2377 router next to the others.
//! Every call is checked against its caller ([`super::callers`]) before
//! openraft sees it, and a snapshot's announced size is bounded before any
//! memory is set aside for it.

use crate::error_chain::ErrorChain;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::callers::{check_certificate, check_claim, RaftCall, Transport};
use super::network::{PeerContacts, SnapshotHeader, MAX_MESSAGE_BYTES};
use crate::ca::PeerIdentity;
use crate::proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use crate::proto::raft::{snapshot_chunk, RaftMessage, SnapshotChunk};
use crate::store::state_machine::AppliedView;
use crate::store::types::{Snapshot, TypeConfig};
use crate::store::StateMachine;

/// The largest snapshot a member accepts, announced or sent. The store's
/// objects are a few KB each; a million of them fit.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Memory set aside for a snapshot before its data arrives: it grows with
/// what the peer actually sends, never with what it announces.
const SNAPSHOT_PREALLOC: usize = 1 << 20;

/// Counters of what the service received, for metrics and tests.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub snapshots_installed: AtomicU64,
    pub snapshot_chunks_received: AtomicU64,
    /// Size of the largest snapshot installed, in bytes.
    pub largest_snapshot_bytes: AtomicU64,
    /// Longest time a snapshot took to arrive, first chunk to last, in ms.
    pub longest_snapshot_transfer_ms: AtomicU64,
}

/// State shared by the node and its service.
pub(crate) struct ServiceShared {
    pub raft: openraft::Raft<TypeConfig, StateMachine>,
    pub contacts: Arc<PeerContacts>,
    pub stopped: AtomicBool,
    pub chunk_timeout: Duration,
    pub stats: Arc<ServiceStats>,
    /// The store, to check callers against.
    pub view: Arc<AppliedView>,
    /// Whether callers present certificates that can be checked.
    pub transport: Transport,
}

/// The `shoal.raft.Raft` service of one manager.
#[derive(Clone)]
pub struct RaftService {
    shared: Arc<ServiceShared>,
}

impl RaftService {
    pub(crate) fn new(shared: Arc<ServiceShared>) -> RaftService {
        RaftService { shared }
    }

    /// Wraps the service for a tonic router, with message limits that fit
    /// Raft batches.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The caller's certificate, checked before anything of the message is
    /// decoded: a manager certificate of this cluster. Plaintext transports
    /// (tests) check nothing.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<PeerIdentity>, Status> {
        if self.shared.transport == Transport::Plaintext {
            return Ok(None);
        }
        let certs = request.peer_certs();
        check_certificate(certs.as_deref().map(Vec::as_slice))
            .map(Some)
            .inspect_err(|status| refused(request.remote_addr(), status))
    }

    /// Refuses a call unless its caller is the Raft member `claimed` (see
    /// [`super::callers`]).
    fn check_caller(
        &self,
        caller: &Option<PeerIdentity>,
        remote: Option<std::net::SocketAddr>,
        call: RaftCall,
        claimed: u64,
    ) -> Result<(), Status> {
        let Some(caller) = caller else {
            return Ok(());
        };
        let voters = self
            .shared
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .voter_ids()
            .collect();
        check_claim(caller, call, claimed, &self.shared.view.objects(), &voters)
            .inspect_err(|status| refused(remote, status))
    }

    fn running(&self) -> Result<(), Status> {
        if self.shared.stopped.load(Ordering::Acquire) {
            Err(Status::unavailable(
                "this manager's Raft member has stopped",
            ))
        } else {
            Ok(())
        }
    }
}

fn decode<T: DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft {what}: {}", e.chain())))
}

fn refused(remote: Option<std::net::SocketAddr>, status: &Status) {
    tracing::warn!(?remote, "refused a Raft call: {}", status.message());
}

/// The messages of the Raft service, as a fuzz target names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftWire {
    AppendEntries,
    Vote,
    SnapshotHeader,
}

/// Decodes `json` as the service decodes the message `wire` (after the
/// caller's certificate, before the rest of the caller check). For fuzzing:
/// it must refuse anything malformed without panicking.
pub fn decode_wire(wire: RaftWire, json: &[u8]) -> Result<(), Status> {
    match wire {
        RaftWire::AppendEntries => {
            decode::<AppendEntriesRequest<TypeConfig>>("append-entries", json).map(drop)
        }
        RaftWire::Vote => decode::<VoteRequest<TypeConfig>>("vote", json).map(drop),
        RaftWire::SnapshotHeader => decode_header(json).map(drop),
    }
}

/// Decodes a snapshot's first chunk and refuses a size over
/// [`MAX_SNAPSHOT_BYTES`], before anything is allocated for the data.
pub fn decode_header(json: &[u8]) -> Result<SnapshotHeader, Status> {
    let header: SnapshotHeader = decode("snapshot header", json)?;
    if header.size > MAX_SNAPSHOT_BYTES {
        return Err(Status::invalid_argument(format!(
            "a snapshot of {} bytes is larger than the {MAX_SNAPSHOT_BYTES} a manager accepts",
            header.size
        )));
    }
    Ok(header)
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(value).map_err(|e| Status::internal(e.chain().to_string()))?;
    Ok(Response::new(RaftMessage { json }))
}

/// The next chunk of a snapshot stream, waiting at most `timeout` for it.
async fn next_chunk(
    stream: &mut Streaming<SnapshotChunk>,
    timeout: Duration,
) -> Result<Option<SnapshotChunk>, Status> {
    tokio::time::timeout(timeout, stream.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!("no snapshot chunk received for {timeout:?}"))
        })?
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("this manager's Raft member has stopped: {e}"))
}

fn raft_status<E: std::fmt::Display>(e: RaftError<TypeConfig, E>) -> Status {
    stopped(e)
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.running()?;
        let caller = self.caller(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode("append-entries", &request.get_ref().json)?;
        self.check_caller(
            &caller,
            request.remote_addr(),
            RaftCall::AppendEntries,
            rpc.vote.leader_id.node_id,
        )?;
        self.shared.contacts.ok(rpc.vote.leader_id.node_id);
        let resp = self
            .shared
            .raft
            .append_entries(rpc)
            .await
            .map_err(raft_status)?;
        encode(&resp)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.running()?;
        let caller = self.caller(&request)?;
        let rpc: VoteRequest<TypeConfig> = decode("vote", &request.get_ref().json)?;
        self.check_caller(
            &caller,
            request.remote_addr(),
            RaftCall::Vote,
            rpc.vote.leader_id.node_id,
        )?;
        self.shared.contacts.ok(rpc.vote.leader_id.node_id);
        let resp = self.shared.raft.vote(rpc).await.map_err(raft_status)?;
        encode(&resp)
    }

    /// Receives a snapshot chunk by chunk; a peer that sends nothing for one
    /// chunk timeout is cut off, however long the whole transfer takes.
    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.running()?;
        let started = std::time::Instant::now();
        let caller = self.caller(&request)?;
        let remote = request.remote_addr();
        let mut stream = request.into_inner();
        let timeout = self.shared.chunk_timeout;
        let header: SnapshotHeader = match next_chunk(&mut stream, timeout).await? {
            Some(SnapshotChunk {
                part: Some(snapshot_chunk::Part::Meta(json)),
            }) => decode_header(&json)?,
            _ => {
                return Err(Status::invalid_argument(
                    "a snapshot stream must start with its meta chunk",
                ))
            }
        };
        self.check_caller(
            &caller,
            remote,
            RaftCall::InstallSnapshot,
            header.vote.leader_id.node_id,
        )?;
        self.shared.contacts.ok(header.vote.leader_id.node_id);
        let size = usize::try_from(header.size)
            .map_err(|_| Status::invalid_argument("snapshot too large for this manager"))?;
        let mut data = Vec::with_capacity(size.min(SNAPSHOT_PREALLOC));
        while let Some(chunk) = next_chunk(&mut stream, timeout).await? {
            let Some(snapshot_chunk::Part::Data(bytes)) = chunk.part else {
                return Err(Status::invalid_argument(
                    "a snapshot stream has one meta chunk, then data chunks",
                ));
            };
            if data.len() + bytes.len() > size {
                return Err(Status::invalid_argument(format!(
                    "snapshot longer than the announced {size} bytes"
                )));
            }
            data.extend_from_slice(&bytes);
            self.shared
                .stats
                .snapshot_chunks_received
                .fetch_add(1, Ordering::Relaxed);
        }
        if data.len() != size {
            return Err(Status::invalid_argument(format!(
                "snapshot stream ended after {} of {size} bytes",
                data.len()
            )));
        }
        let transfer = started.elapsed();
        tracing::info!(
            bytes = size,
            from = header.vote.leader_id.node_id,
            ?transfer,
            "received a Raft snapshot"
        );
        let snapshot = Snapshot {
            meta: header.meta,
            snapshot: data,
        };
        let resp = self
            .shared
            .raft
            .install_full_snapshot(header.vote, snapshot)
            .await
            .map_err(|e: Fatal<TypeConfig>| stopped(e))?;
        let stats = &self.shared.stats;
        stats.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        stats
            .largest_snapshot_bytes
            .fetch_max(size as u64, Ordering::Relaxed);
        stats
            .longest_snapshot_transfer_ms
            .fetch_max(transfer.as_millis() as u64, Ordering::Relaxed);
        encode(&resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{SnapshotMeta, Vote};

    fn header(size: u64) -> Vec<u8> {
        serde_json::to_vec(&SnapshotHeader {
            vote: Vote::new(3, 7),
            meta: SnapshotMeta::default(),
            size,
        })
        .unwrap()
    }

    #[test]
    fn a_snapshot_header_over_the_limit_is_refused_before_allocation() {
        assert_eq!(decode_header(&header(5)).unwrap().size, 5);
        assert!(decode_header(&header(MAX_SNAPSHOT_BYTES)).is_ok());
        let err = decode_header(&header(MAX_SNAPSHOT_BYTES + 1)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("larger than"), "{}", err.message());
        let err = decode_header(&header(u64::MAX)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(decode_header(b"{\"size\": 1").is_err());
    }
}
