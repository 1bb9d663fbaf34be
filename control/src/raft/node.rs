//! [`RaftNode`]: the one handle the daemon holds on the managers' Raft group.
//! It opens the store, runs openraft, writes commands with a bounded wait,
//! reads the local state without quorum, and changes the membership.

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{
    ChangeMembershipError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, ChangeMembers, Instant as _, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::network::{Network, PeerConnector, PeerContacts};
use super::service::{RaftService, ServiceShared, ServiceStats};
use crate::store::db::{blocking, key, Db, Owner};
use crate::store::state_machine::AppliedView;
use crate::store::types::TypeConfig;
use crate::store::{AtRest, Command, LogStore, Objects, Response, StateMachine, StoreError};

/// The largest command a write may carry, serialized.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// How often a write waiting for an election checks again.
const ELECTION_POLL: Duration = Duration::from_millis(20);

/// Longest kind or id of an object.
const MAX_NAME_BYTES: usize = 256;

/// Timing and sizes of a Raft member.
///
/// A follower starts an election once it has heard nothing from the leader
/// for the leader's lease (openraft takes `election_timeout_max` for it) plus
/// a random election timeout: 0.7-0.9 s with the defaults, so a new leader
/// is in place about a second after the old one dies.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    /// How often the leader tells followers it is alive.
    pub heartbeat: Duration,
    /// A follower that hears nothing from the leader for the lease
    /// (`election_timeout_max`) plus a random time in this range starts an
    /// election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How long [`RaftNode::write`] waits for a command to be committed.
    pub write_timeout: Duration,
    /// A snapshot is taken after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept after a snapshot, so that briefly absent followers
    /// catch up from the log instead of a snapshot.
    pub keep_logs_after_snapshot: u64,
    /// Snapshots travel in chunks of this many bytes.
    pub snapshot_chunk_size: usize,
    /// Longest wait for one snapshot chunk to be taken by the receiver. A
    /// transfer as a whole has no deadline.
    pub snapshot_chunk_timeout: Duration,
    /// [`RaftNode::add_voter`] gives up on a new member that neither made
    /// replication progress nor answered for this long.
    pub catch_up_stall_timeout: Duration,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(250),
            election_timeout_max: Duration::from_millis(450),
            write_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            keep_logs_after_snapshot: 1_000,
            snapshot_chunk_size: 1 << 20,
            snapshot_chunk_timeout: Duration::from_secs(10),
            catch_up_stall_timeout: Duration::from_secs(30),
        }
    }
}

impl RaftTuning {
    fn openraft_config(&self) -> Result<openraft::Config, StoreError> {
        let ms = |d: Duration| d.as_millis() as u64;
        openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.snapshot_chunk_timeout),
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            snapshot_max_chunk_size: self.snapshot_chunk_size as u64,
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            replication_lag_threshold: self.snapshot_every + self.keep_logs_after_snapshot,
            backoff: "100ms 200ms ...1s".into(),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Tuning(e.chain().to_string()))
    }

    /// How recently a peer must have been heard from to count as reachable.
    fn reachable_window(&self) -> Duration {
        self.election_timeout_max * 2
    }
}

/// Why a write (or a membership change) did not happen, or may not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("manager {leader_id} at {leader_addr} is the Raft leader: send the write there")]
    ForwardToLeader { leader_id: u64, leader_addr: String },

    #[error("{}", no_leader(*reachable, *voters))]
    NoLeader { reachable: usize, voters: usize },

    #[error("the write was not committed within {after:?} ({}); it may still be applied: read before retrying", quorum(*reachable, *voters))]
    Timeout {
        after: Duration,
        reachable: usize,
        voters: usize,
    },

    #[error("the Raft leader changed before the write was committed: it may or may not be applied; read before retrying")]
    LeaderChanged,

    #[error("the command is {bytes} bytes, more than the {max} a write may carry: split it into smaller writes")]
    TooLarge { bytes: usize, max: usize },

    #[error("invalid command: {0}")]
    Invalid(String),

    #[error("membership change refused: {0}")]
    Membership(String),

    #[error("manager {raft_id} made no replication progress and did not answer for {stalled_for:?}: check that it runs and is reachable at its advertised address")]
    CatchUpStalled { raft_id: u64, stalled_for: Duration },

    #[error("the Raft member has stopped: {0}")]
    Fatal(String),
}

fn quorum_needed(voters: usize) -> usize {
    voters / 2 + 1
}

fn quorum(reachable: usize, voters: usize) -> String {
    let needed = quorum_needed(voters);
    if reachable < needed {
        format!("no quorum: {reachable} of {voters} managers reachable; writes are refused until {needed} are")
    } else {
        format!("{reachable} of {voters} managers reachable")
    }
}

fn no_leader(reachable: usize, voters: usize) -> String {
    if voters == 0 {
        "this manager belongs to no Raft group yet: initialize a swarm or join one".into()
    } else if reachable < quorum_needed(voters) {
        quorum(reachable, voters)
    } else {
        format!("no Raft leader yet ({reachable} of {voters} managers reachable): an election is under way, retry in a moment")
    }
}

/// A member of the Raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub raft_id: u64,
    pub addr: String,
    /// False for a learner that is still catching up.
    pub voter: bool,
}

/// What this member is doing in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Stopped,
}

/// Another member as this one sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub raft_id: u64,
    pub addr: String,
    pub voter: bool,
    /// On the leader: time since the peer last acknowledged a heartbeat or
    /// replication (`None`: never, or this member is not the leader).
    pub last_ack: Option<Duration>,
    /// On the leader: the highest log index known to be on the peer.
    pub matched_index: Option<u64>,
    /// Whether this member exchanged a Raft message with the peer recently
    /// (within two maximum election timeouts).
    pub reachable: bool,
}

/// A member's view of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub raft_id: u64,
    pub role: RaftRole,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub peers: Vec<PeerStatus>,
    /// How many times this member saw a new leader since it started.
    pub leader_changes: u64,
}

struct NodeInner {
    raft_id: u64,
    addr: String,
    raft: openraft::Raft<TypeConfig, StateMachine>,
    view: Arc<AppliedView>,
    shared: Arc<ServiceShared>,
    tuning: RaftTuning,
    /// Counted by a task following openraft's metrics ([`count_leaders`]).
    leader_changes: Arc<AtomicU64>,
}

/// A manager's member of the Raft group. Cheap to clone; all clones are one
/// member.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<NodeInner>,
}

type MetricsSnapshot = openraft::RaftMetrics<TypeConfig>;

/// Whether going from leader `before` to `after` is a leader change: a
/// leader known, and not the one before (losing a leader is not a change;
/// finding the same one again after an election is not either).
pub(crate) fn is_leader_change(before: Option<u64>, after: Option<u64>) -> bool {
    after.is_some() && after != before
}

/// Counts leader changes in `changes` until the Raft member stops (its
/// metrics channel closes).
async fn count_leaders(
    mut metrics: openraft::alias::WatchReceiverOf<TypeConfig, MetricsSnapshot>,
    changes: Arc<AtomicU64>,
) {
    let mut last_known: Option<u64> = None;
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        if is_leader_change(last_known, leader) {
            changes.fetch_add(1, Ordering::Relaxed);
        }
        if leader.is_some() {
            last_known = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl RaftNode {
    /// Opens the store in `dir` and starts the member `raft_id`, which peers
    /// reach at `advertise_addr` (`host:port`). A new store starts outside
    /// any group: call [`RaftNode::initialize`] (swarm init) or have the
    /// leader call [`RaftNode::add_voter`] (join).
    pub async fn open(
        dir: &Path,
        raft_id: u64,
        advertise_addr: &str,
        connector: Arc<dyn PeerConnector>,
        at_rest: Arc<dyn AtRest>,
    ) -> Result<RaftNode, StoreError> {
        Self::open_tuned(
            dir,
            raft_id,
            advertise_addr,
            connector,
            at_rest,
            RaftTuning::default(),
        )
        .await
    }

    /// [`RaftNode::open`] with non-default timing.
    pub async fn open_tuned(
        dir: &Path,
        raft_id: u64,
        advertise_addr: &str,
        connector: Arc<dyn PeerConnector>,
        at_rest: Arc<dyn AtRest>,
        tuning: RaftTuning,
    ) -> Result<RaftNode, StoreError> {
        connector
            .endpoint(advertise_addr)
            .map_err(|e| StoreError::BadAddress {
                addr: advertise_addr.to_string(),
                detail: e.chain().to_string(),
            })?;
        let config = Arc::new(tuning.openraft_config()?);
        let (dir, addr) = (dir.to_path_buf(), advertise_addr.to_string());
        let owner = Owner {
            raft_id,
            addr: addr.clone(),
        };
        let db = blocking(move || {
            let db = Db::open(&dir, at_rest)?;
            match db.meta::<Owner>(key::MEMBER)? {
                Some(stored) if stored.raft_id != raft_id => {
                    return Err(StoreError::WrongMember {
                        stored: stored.raft_id,
                        requested: raft_id,
                    })
                }
                Some(stored) if stored == owner => {}
                _ => db.set_meta(key::MEMBER, &owner)?,
            }
            Ok(db)
        })
        .await?;
        let db = Arc::new(db);
        let sm = StateMachine::open(db.clone()).await?;
        let view = sm.view();
        let contacts = Arc::new(PeerContacts::default());
        let transport = connector.transport();
        let network = Network::new(raft_id, connector, contacts.clone());
        let raft = openraft::Raft::new(raft_id, config, network, LogStore::new(db), sm)
            .await
            .map_err(|e| StoreError::Stopped(e.chain().to_string()))?;
        let shared = Arc::new(ServiceShared {
            raft: raft.clone(),
            contacts,
            stopped: Default::default(),
            chunk_timeout: tuning.snapshot_chunk_timeout,
            stats: Arc::default(),
            view: view.clone(),
            transport,
        });
        let leader_changes = Arc::new(AtomicU64::new(0));
        tokio::spawn(count_leaders(raft.metrics(), leader_changes.clone()));
        Ok(RaftNode {
            inner: Arc::new(NodeInner {
                raft_id,
                addr,
                raft,
                view,
                shared,
                tuning,
                leader_changes,
            }),
        })
    }

    pub fn raft_id(&self) -> u64 {
        self.inner.raft_id
    }

    pub fn advertise_addr(&self) -> &str {
        &self.inner.addr
    }

    /// The gRPC service peers call; add it to the 2377 router.
    pub fn service(&self) -> RaftService {
        RaftService::new(self.inner.shared.clone())
    }

    /// What the service received so far.
    pub fn service_stats(&self) -> Arc<ServiceStats> {
        self.inner.shared.stats.clone()
    }

    /// Whether this member already belongs to a group.
    pub async fn is_initialized(&self) -> Result<bool, StoreError> {
        self.inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| StoreError::Stopped(e.chain().to_string()))
    }

    /// Makes this member the single voter of a new group (swarm init) and
    /// waits until it leads it.
    pub async fn initialize(&self) -> Result<(), StoreError> {
        let nodes = BTreeMap::from([(self.inner.raft_id, BasicNode::new(&self.inner.addr))]);
        match self.inner.raft.initialize(nodes).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Err(StoreError::AlreadyInitialized)
            }
            Err(e) => return Err(StoreError::Stopped(e.chain().to_string())),
        }
        // Leading, with its first entries (the membership among them) applied.
        self.inner
            .raft
            .wait(Some(self.inner.tuning.write_timeout))
            .metrics(
                |m| {
                    m.state == ServerState::Leader
                        && m.last_log_index.is_some()
                        && m.last_applied.as_ref().map(|l| l.index) == m.last_log_index
                },
                "initialize",
            )
            .await
            .map_err(|e| StoreError::Stopped(format!("did not become leader: {}", e.chain())))?;
        Ok(())
    }

    /// Replicates `cmd` and returns its outcome once applied here, waiting at
    /// most the tuned write timeout.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        self.write_within(cmd, self.inner.tuning.write_timeout)
            .await
    }

    /// [`RaftNode::write`] with its own timeout.
    ///
    /// While no leader is known but a quorum of voters is reachable (an
    /// election is under way, or a new leader has not heard from a quorum
    /// yet), it waits and tries again; without a reachable quorum it fails at
    /// once with [`WriteError::NoLeader`].
    pub async fn write_within(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Response, WriteError> {
        validate(&cmd)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt = self.inner.raft.client_write(cmd.clone());
            let err = match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => {
                    let (reachable, voters) = self.reachability();
                    return Err(WriteError::Timeout {
                        after: timeout,
                        reachable,
                        voters,
                    });
                }
                Ok(Ok(resp)) => return Ok(resp.data),
                Ok(Err(e)) => self.write_error(e),
            };
            match err {
                WriteError::NoLeader { reachable, voters }
                    if reachable >= quorum_needed(voters)
                        && tokio::time::Instant::now() + ELECTION_POLL < deadline =>
                {
                    tokio::time::sleep(ELECTION_POLL).await;
                }
                err => return Err(err),
            }
        }
    }

    /// The objects as last applied here. Needs no quorum: it may lag the
    /// leader, and [`Objects::applied_index`] says how far it got.
    pub fn read(&self) -> Objects {
        self.inner.view.objects()
    }

    /// Watches the applied log index, to react to changes of the objects.
    pub fn watch_applied(&self) -> watch::Receiver<Option<u64>> {
        self.inner.view.subscribe()
    }

    /// The current leader's Raft id and address, if one is known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.metrics_snapshot();
        let leader = m.current_leader?;
        let addr = m.membership_config.get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// Every member of the group (voters and learners), by Raft id.
    pub fn members(&self) -> Vec<Member> {
        let m = self.metrics_snapshot();
        members_of(&m)
    }

    /// This member's view of the group; per-peer acknowledgement times are
    /// known on the leader only.
    pub fn metrics(&self) -> RaftStatus {
        let m = self.metrics_snapshot();
        let window = self.inner.tuning.reachable_window();
        let peers = members_of(&m)
            .into_iter()
            .filter(|p| p.raft_id != self.inner.raft_id)
            .map(|p| {
                let last_ack = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&p.raft_id).cloned().flatten())
                    .map(|at| at.elapsed());
                let matched_index = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&p.raft_id).cloned().flatten())
                    .map(|l| l.index);
                PeerStatus {
                    reachable: self.inner.shared.contacts.reachable(p.raft_id, window),
                    raft_id: p.raft_id,
                    addr: p.addr,
                    voter: p.voter,
                    last_ack,
                    matched_index,
                }
            })
            .collect();
        RaftStatus {
            raft_id: self.inner.raft_id,
            role: match m.state {
                ServerState::Leader => RaftRole::Leader,
                ServerState::Follower => RaftRole::Follower,
                ServerState::Candidate => RaftRole::Candidate,
                ServerState::Learner => RaftRole::Learner,
                ServerState::Shutdown => RaftRole::Stopped,
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.as_ref().map(|l| l.index),
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            peers,
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
        }
    }

    /// Adds a manager (join): as a learner first, then, once it has caught
    /// up with the log (by snapshot if needed), as a voter. Call it on the
    /// leader.
    pub async fn add_voter(&self, raft_id: u64, addr: &str) -> Result<(), WriteError> {
        let raft = &self.inner.raft;
        let timeout = self.inner.tuning.write_timeout;
        self.membership_step(timeout, || {
            raft.add_learner(raft_id, BasicNode::new(addr), false)
        })
        .await?;
        self.wait_caught_up(raft_id).await?;
        self.membership_step(timeout, || {
            let voters = ChangeMembers::AddVoterIds(BTreeSet::from([raft_id]));
            raft.change_membership(voters, false)
        })
        .await?;
        tracing::info!(raft_id, addr, "manager joined the Raft group as a voter");
        Ok(())
    }

    /// Removes a manager from the group (demote or node rm). Call it on the
    /// leader. Removing a member that is not there does nothing.
    pub async fn remove_voter(&self, raft_id: u64) -> Result<(), WriteError> {
        let member = self.members().into_iter().find(|m| m.raft_id == raft_id);
        let change = match member {
            None => return Ok(()),
            Some(m) if m.voter => ChangeMembers::RemoveVoters(BTreeSet::from([raft_id])),
            Some(_) => ChangeMembers::RemoveNodes(BTreeSet::from([raft_id])),
        };
        let timeout = self.inner.tuning.write_timeout;
        self.membership_step(timeout, || {
            self.inner.raft.change_membership(change.clone(), false)
        })
        .await?;
        tracing::info!(raft_id, "manager left the Raft group");
        Ok(())
    }

    /// Stops the member: it answers peers with "unavailable" and lets go of
    /// its store.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shared.stopped.store(true, Ordering::Release);
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| StoreError::Stopped(e.chain().to_string()))
    }

    fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.inner.raft.metrics().borrow_watched().clone()
    }

    /// (reachable voters including this one if it votes, voters).
    fn reachability(&self) -> (usize, usize) {
        let m = self.metrics_snapshot();
        let window = self.inner.tuning.reachable_window();
        let voters: Vec<u64> = m.membership_config.voter_ids().collect();
        let reachable = voters
            .iter()
            .filter(|&&v| {
                v == self.inner.raft_id || self.inner.shared.contacts.reachable(v, window)
            })
            .count();
        (reachable, voters.len())
    }

    fn no_leader_error(&self) -> WriteError {
        let (reachable, voters) = self.reachability();
        WriteError::NoLeader { reachable, voters }
    }

    fn forward(&self, f: ForwardToLeader<TypeConfig>) -> WriteError {
        let Some(leader_id) = f.leader_id.filter(|id| *id != self.inner.raft_id) else {
            return self.no_leader_error();
        };
        let addr = f.leader_node.map(|n| n.addr).or_else(|| {
            self.members()
                .into_iter()
                .find(|m| m.raft_id == leader_id)
                .map(|m| m.addr)
        });
        match addr {
            Some(leader_addr) => WriteError::ForwardToLeader {
                leader_id,
                leader_addr,
            },
            None => self.no_leader_error(),
        }
    }

    fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> WriteError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.forward(f),
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                WriteError::LeaderChanged
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                WriteError::Membership(e.chain().to_string())
            }
            RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
                WriteError::Membership(e.chain().to_string())
            }
            RaftError::Fatal(e) => WriteError::Fatal(e.chain().to_string()),
        }
    }

    /// Runs a membership change, retrying while another one is in progress,
    /// for at most `timeout` in all.
    async fn membership_step<T, F, Fut>(&self, timeout: Duration, step: F) -> Result<T, WriteError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
            Output = Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>,
        >,
    {
        let retrying = async {
            loop {
                match step().await {
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                        ChangeMembershipError::InProgress(_),
                    ))) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(timeout, retrying).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(self.write_error(e)),
            Err(_) => {
                let (reachable, voters) = self.reachability();
                Err(WriteError::Timeout {
                    after: timeout,
                    reachable,
                    voters,
                })
            }
        }
    }

    /// Waits until learner `raft_id` holds the leader's log as it was when
    /// the wait began. Gives up only if the learner neither progresses nor
    /// answers for the stall timeout: a long snapshot transfer is fine.
    async fn wait_caught_up(&self, raft_id: u64) -> Result<(), WriteError> {
        let stall_limit = self.inner.tuning.catch_up_stall_timeout;
        let mut target = None;
        let mut last_matched = None;
        let mut last_progress = Instant::now();
        loop {
            let m = self.metrics_snapshot();
            if m.state != ServerState::Leader {
                let leader = ForwardToLeader {
                    leader_id: m.current_leader,
                    leader_node: None,
                    reason: Default::default(),
                };
                return Err(self.forward(leader));
            }
            let target = *target.get_or_insert(m.last_log_index);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&raft_id).cloned().flatten())
                .map(|l| l.index);
            if matched.is_some() && matched >= target {
                return Ok(());
            }
            if matched != last_matched
                || self
                    .inner
                    .shared
                    .contacts
                    .reachable(raft_id, self.inner.tuning.heartbeat * 10)
            {
                last_matched = matched;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > stall_limit {
                return Err(WriteError::CatchUpStalled {
                    raft_id,
                    stalled_for: last_progress.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn members_of(m: &MetricsSnapshot) -> Vec<Member> {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            raft_id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

/// Refuses commands that could never be applied sensibly, before they reach
/// the log.
fn validate(cmd: &Command) -> Result<(), WriteError> {
    fn names(cmd: &Command) -> Result<(), WriteError> {
        match cmd {
            Command::Set { kind, id, .. } | Command::Delete { kind, id, .. } => {
                for (what, name) in [("kind", kind), ("id", id)] {
                    if name.is_empty() || name.len() > MAX_NAME_BYTES {
                        return Err(WriteError::Invalid(format!(
                            "object {what} must be 1-{MAX_NAME_BYTES} bytes, got {} in {kind}/{id}",
                            name.len()
                        )));
                    }
                }
                Ok(())
            }
            Command::Batch(cmds) => cmds.iter().try_for_each(names),
        }
    }
    names(cmd)?;
    let bytes = serde_json::to_vec(cmd)
        .map_err(|e| WriteError::Invalid(e.chain().to_string()))?
        .len();
    if bytes > MAX_COMMAND_BYTES {
        return Err(WriteError::TooLarge {
            bytes,
            max: MAX_COMMAND_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_how_many_managers_are_needed() {
        let e = WriteError::NoLeader {
            reachable: 1,
            voters: 3,
        };
        assert_eq!(
            e.to_string(),
            "no quorum: 1 of 3 managers reachable; writes are refused until 2 are"
        );
        let e = WriteError::NoLeader {
            reachable: 3,
            voters: 3,
        };
        assert!(e.to_string().contains("election"), "{e}");
        let e = WriteError::NoLeader {
            reachable: 0,
            voters: 0,
        };
        assert!(e.to_string().contains("no Raft group"), "{e}");
        let e = WriteError::Timeout {
            after: Duration::from_secs(5),
            reachable: 2,
            voters: 5,
        };
        assert!(
            e.to_string()
                .contains("no quorum: 2 of 5 managers reachable; writes are refused until 3 are"),
            "{e}"
        );
    }

    #[test]
    fn commands_are_checked_before_the_log() {
        let ok = Command::delete("node", "a", None);
        assert!(validate(&ok).is_ok());
        let empty = Command::Batch(vec![ok, Command::delete("node", "", None)]);
        assert!(matches!(validate(&empty), Err(WriteError::Invalid(_))));
        let long = Command::delete(&"k".repeat(MAX_NAME_BYTES + 1), "a", None);
        assert!(matches!(validate(&long), Err(WriteError::Invalid(_))));
    }

    #[test]
    fn default_tuning_is_valid_for_openraft() {
        let config = RaftTuning::default().openraft_config().unwrap();
        assert_eq!(config.heartbeat_interval, 100);
        let bad = RaftTuning {
            election_timeout_min: Duration::from_millis(50),
            ..RaftTuning::default()
        };
        assert!(matches!(bad.openraft_config(), Err(StoreError::Tuning(_))));
    }
}
