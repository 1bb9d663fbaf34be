//! What the manager core needs of the replicated store: read the objects
//! (locally, no quorum needed), commit a command on the leader, know the
//! leader, and change the Raft group. The daemon gives it the Raft store
//! (`crate::raft::RaftNode`); tests give it a [`MemStore`].

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::store::objects::Changes;
use crate::store::{Command, Objects, Response};

/// The Raft leader as this manager knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub raft_id: u64,
    /// Its manager API address (`ip:port`).
    pub addr: String,
}

/// Why a write did not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteFailure {
    /// This manager is not the leader, or stopped being it before the
    /// write committed.
    #[error("this manager is not the leader")]
    NotLeader,
    /// No leader, or the write was not committed in time: too few managers
    /// answer.
    #[error("no quorum")]
    NoQuorum,
    /// The store refused the command itself (too large, malformed).
    #[error("{0}")]
    Rejected(String),
    /// A change of the Raft group was refused or did not complete.
    #[error("{0}")]
    Membership(String),
    /// The store has stopped.
    #[error("{0}")]
    Stopped(String),
}

/// The replicated store as the manager core uses it.
pub trait Store: Send + Sync + 'static {
    /// The objects as applied on this manager (they may lag the leader's).
    fn read(&self) -> Objects;
    /// Changes whenever a new log index is applied here.
    fn watch_applied(&self) -> watch::Receiver<Option<u64>>;
    /// The leader, if one is known.
    fn leader(&self) -> Option<Leader>;
    /// Commits `cmd`; bounded in time. Only the leader can.
    fn write(&self, cmd: Command) -> impl Future<Output = Result<Response, WriteFailure>> + Send;
    /// Adds a manager to the Raft group as a voter (on the leader).
    fn add_voter(
        &self,
        raft_id: u64,
        addr: &str,
    ) -> impl Future<Output = Result<(), WriteFailure>> + Send;
    /// Removes a manager from the Raft group (on the leader).
    fn remove_voter(&self, raft_id: u64) -> impl Future<Output = Result<(), WriteFailure>> + Send;
}

/// A store in memory, for tests and simulations: one copy of the objects
/// that every manager built on it shares (a perfectly replicated store),
/// with the leader set by hand and races injected on demand.
pub struct MemStore {
    state: Mutex<MemState>,
    applied: watch::Sender<Option<u64>>,
}

#[derive(Default)]
struct MemState {
    objects: Objects,
    index: u64,
    leader: Option<Leader>,
    voters: BTreeSet<u64>,
    /// Commands another writer lands just before the next writes.
    interleaved: VecDeque<Command>,
    /// When set, every write fails so.
    failing: Option<WriteFailure>,
    writes: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            state: Mutex::default(),
            applied: watch::channel(None).0,
        }
    }
}

impl MemStore {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the leader every manager on this store sees.
    pub fn set_leader(&self, leader: Option<Leader>) {
        self.state().leader = leader;
    }

    /// Commits `cmd` at once, as another writer would.
    pub fn apply(&self, cmd: &Command) -> Response {
        let mut state = self.state();
        let resp = state.commit(cmd);
        let index = state.index;
        drop(state);
        self.applied.send_replace(Some(index));
        resp
    }

    /// Lands `cmd` just before the next write: another writer that wins a
    /// race between a handler's read and its write.
    pub fn interleave(&self, cmd: Command) {
        self.state().interleaved.push_back(cmd);
    }

    /// Makes every write fail with `failure` (`None`: writes work again).
    pub fn fail_writes(&self, failure: Option<WriteFailure>) {
        self.state().failing = failure;
    }

    /// How many writes were attempted through [`Store::write`].
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// The Raft voters, as changed by `add_voter` and `remove_voter`.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.state().voters.clone()
    }
}

impl MemState {
    fn commit(&mut self, cmd: &Command) -> Response {
        self.index += 1;
        let mut changes = Changes::default();
        let resp = changes.stage(&self.objects, cmd, self.index);
        self.objects.apply(&changes, Some(self.index));
        resp
    }
}

impl Store for MemStore {
    fn read(&self) -> Objects {
        self.state().objects.clone()
    }

    fn watch_applied(&self) -> watch::Receiver<Option<u64>> {
        self.applied.subscribe()
    }

    fn leader(&self) -> Option<Leader> {
        self.state().leader.clone()
    }

    async fn write(&self, cmd: Command) -> Result<Response, WriteFailure> {
        let mut state = self.state();
        state.writes += 1;
        if let Some(failure) = state.failing.clone() {
            return Err(failure);
        }
        if let Some(other) = state.interleaved.pop_front() {
            state.commit(&other);
        }
        let resp = state.commit(&cmd);
        let index = state.index;
        drop(state);
        self.applied.send_replace(Some(index));
        Ok(resp)
    }

    async fn add_voter(&self, raft_id: u64, _addr: &str) -> Result<(), WriteFailure> {
        self.state().voters.insert(raft_id);
        Ok(())
    }

    async fn remove_voter(&self, raft_id: u64) -> Result<(), WriteFailure> {
        self.state().voters.remove(&raft_id);
        Ok(())
    }
}

/// A store shared by several managers (tests run a leader and a follower on
/// one [`MemStore`]).
impl<T: Store> Store for std::sync::Arc<T> {
    fn read(&self) -> Objects {
        (**self).read()
    }

    fn watch_applied(&self) -> watch::Receiver<Option<u64>> {
        (**self).watch_applied()
    }

    fn leader(&self) -> Option<Leader> {
        (**self).leader()
    }

    fn write(&self, cmd: Command) -> impl Future<Output = Result<Response, WriteFailure>> + Send {
        (**self).write(cmd)
    }

    fn add_voter(
        &self,
        raft_id: u64,
        addr: &str,
    ) -> impl Future<Output = Result<(), WriteFailure>> + Send {
        (**self).add_voter(raft_id, addr)
    }

    fn remove_voter(&self, raft_id: u64) -> impl Future<Output = Result<(), WriteFailure>> + Send {
        (**self).remove_voter(raft_id)
    }
}
