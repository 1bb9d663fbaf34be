//! The Raft store as the manager core's [`Store`](crate::manager::Store):
//! writes bounded in time, and Raft's write errors sorted into what the
//! manager core acts on.

use crate::error_chain::ErrorChain;
use std::time::Duration;

use tokio::sync::watch;

use super::{RaftNode, WriteError};
use crate::manager::{Leader, Store, WriteFailure};
use crate::store::{Command, Objects, Response};

/// How long a commit may take before the write fails with the quorum error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

fn failure(e: WriteError) -> WriteFailure {
    match e {
        WriteError::ForwardToLeader { .. } | WriteError::LeaderChanged => WriteFailure::NotLeader,
        WriteError::NoLeader { .. } | WriteError::Timeout { .. } => WriteFailure::NoQuorum,
        e @ (WriteError::TooLarge { .. } | WriteError::Invalid(_)) => {
            WriteFailure::Rejected(e.chain().to_string())
        }
        e @ (WriteError::Membership(_) | WriteError::CatchUpStalled { .. }) => {
            WriteFailure::Membership(e.chain().to_string())
        }
        e @ WriteError::Fatal(_) => WriteFailure::Stopped(e.chain().to_string()),
    }
}

impl Store for RaftNode {
    fn read(&self) -> Objects {
        RaftNode::read(self)
    }

    fn watch_applied(&self) -> watch::Receiver<Option<u64>> {
        RaftNode::watch_applied(self)
    }

    fn leader(&self) -> Option<Leader> {
        RaftNode::leader(self).map(|(raft_id, addr)| Leader { raft_id, addr })
    }

    async fn write(&self, cmd: Command) -> Result<Response, WriteFailure> {
        self.write_within(cmd, WRITE_TIMEOUT).await.map_err(failure)
    }

    async fn add_voter(&self, raft_id: u64, addr: &str) -> Result<(), WriteFailure> {
        RaftNode::add_voter(self, raft_id, addr)
            .await
            .map_err(failure)
    }

    async fn remove_voter(&self, raft_id: u64) -> Result<(), WriteFailure> {
        RaftNode::remove_voter(self, raft_id).await.map_err(failure)
    }
}
