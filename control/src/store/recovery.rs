//! Offline recovery: `swarm init --force-new-cluster`. Rewrites a stopped
//! manager's store so that it restarts as the only voter of a new Raft group,
//! keeping every object it holds.

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use openraft::{BasicNode, EntryPayload};

use super::db::{key, Db, Owner, LOG};
use super::objects::{Changes, Objects};
use super::state_machine::encode_snapshot;
use super::types::{Entry, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use super::{AtRest, StoreError};

/// What [`force_new_cluster`] kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCluster {
    /// Objects in the store after recovery.
    pub objects: usize,
    /// Log index the new group starts after.
    pub last_index: u64,
}

/// Makes the manager whose state is in `dir` the single voter of a new Raft
/// group, reachable at `addr`. The manager must be stopped.
///
/// Every entry of its local log is applied first, including entries that it
/// never learned were committed: one of them may be a write the old leader
/// acknowledged, and keeping a write nobody saw succeed is the lesser harm.
/// The other managers of the old group must not rejoin with their old state.
pub fn force_new_cluster(
    dir: &Path,
    raft_id: u64,
    addr: &str,
    at_rest: Arc<dyn AtRest>,
) -> Result<NewCluster, StoreError> {
    let db = Db::open(dir, at_rest)?;
    if let Some(member) = db.meta::<Owner>(key::MEMBER)? {
        if member.raft_id != raft_id {
            return Err(StoreError::WrongMember {
                stored: member.raft_id,
                requested: raft_id,
            });
        }
    }
    let applied: Option<LogId> = db.meta::<Option<LogId>>(key::APPLIED)?.flatten();
    let vote: Option<Vote> = db.meta(key::VOTE)?;
    let mut objects = Objects::from_objects(db.load_objects()?, applied.as_ref().map(|l| l.index));

    // Apply what the log holds past the applied index.
    let mut changes = Changes::default();
    let mut last = applied;
    {
        let txn = db.read()?;
        let log = txn.open_table(LOG)?;
        let start = last.as_ref().map_or(0, |l| l.index + 1);
        for row in log.range::<u64>(start..)? {
            let (k, v) = row?;
            let entry: Entry = db.unseal(&format!("log entry {}", k.value()), v.value())?;
            if let EntryPayload::Normal(cmd) = &entry.payload {
                changes.stage(&objects, cmd, entry.log_id.index);
            }
            last = Some(entry.log_id);
        }
    }
    let Some(last) = last else {
        return Err(StoreError::Empty);
    };
    objects.apply(&changes, Some(last.index));

    let term = vote
        .as_ref()
        .map_or(0, |v| v.leader_id.term)
        .max(last.leader_id.term);
    let membership = Membership::new(
        vec![BTreeSet::from([raft_id])],
        BTreeMap::from([(raft_id, BasicNode::new(addr))]),
    )
    .map_err(|e| StoreError::Corrupt {
        what: "new membership".into(),
        detail: e.chain().to_string(),
    })?;
    let membership = StoredMembership::new(Some(last), membership);
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership.clone(),
    };
    let data = encode_snapshot(&objects)?;

    let txn = db.write()?;
    db.put_changes(&txn, &changes)?;
    db.put_meta(&txn, key::APPLIED, &Some(last))?;
    db.put_meta(&txn, key::MEMBERSHIP, &membership)?;
    txn.delete_table(LOG)?;
    txn.open_table(LOG)?;
    db.put_meta(&txn, key::PURGED, &last)?;
    db.put_meta(&txn, key::COMMITTED, &Some(last))?;
    // A vote of our own in a term above any seen: the next election, which
    // only this member votes in, starts past every old leader.
    db.put_meta(&txn, key::VOTE, &Vote::new(term + 1, raft_id))?;
    db.put_meta(
        &txn,
        key::MEMBER,
        &Owner {
            raft_id,
            addr: addr.to_string(),
        },
    )?;
    db.put_snapshot(&txn, &meta, &data)?;
    txn.commit()?;
    tracing::warn!(
        raft_id,
        objects = objects.len(),
        last_index = last.index,
        path = %db.path().display(),
        "forced a new single-manager Raft group"
    );
    Ok(NewCluster {
        objects: objects.len(),
        last_index: last.index,
    })
}
