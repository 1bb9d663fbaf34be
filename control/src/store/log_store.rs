//! The durable Raft log and vote: openraft's `RaftLogStorage` over redb.
//!
//! Every log and vote write is a committed, fsynced redb transaction before
//! openraft is told it is done, and writes are applied in the order openraft
//! issues them.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use redb::ReadableTable;

use super::db::{blocking, key, Db, LOG, META};
use super::types::{Entry, LogId, TypeConfig, Vote};
use super::StoreError;

/// The log store; clones share the same file.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>) -> LogStore {
        LogStore { db }
    }
}

fn entries(db: &Db, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreError> {
    let txn = db.read()?;
    let table = txn.open_table(LOG)?;
    let mut out = Vec::new();
    for row in table.range::<u64>((start, end))? {
        let (k, v) = row?;
        out.push(db.unseal(&format!("log entry {}", k.value()), v.value())?);
    }
    Ok(out)
}

fn last_log_id(db: &Db) -> Result<(Option<LogId>, Option<LogId>), StoreError> {
    let txn = db.read()?;
    let purged: Option<LogId> = db.get_meta(&txn.open_table(META)?, key::PURGED)?;
    let table = txn.open_table(LOG)?;
    let last = match table.last()? {
        Some((k, v)) => {
            let entry: Entry = db.unseal(&format!("log entry {}", k.value()), v.value())?;
            Some(entry.log_id)
        }
        None => purged,
    };
    Ok((purged, last))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let db = self.db.clone();
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        Ok(blocking(move || entries(&db, start, end)).await?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let db = self.db.clone();
        Ok(blocking(move || db.meta(key::VOTE)).await?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let db = self.db.clone();
        let (last_purged_log_id, last_log_id) = blocking(move || last_log_id(&db)).await?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let db = self.db.clone();
        let vote = *vote;
        Ok(blocking(move || db.set_meta(key::VOTE, &vote)).await?)
    }

    /// Not fsynced: it rides on the next durable commit. A committed index
    /// lost in a crash is learned again from the leader, or from the local
    /// log in a group of one.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let db = self.db.clone();
        Ok(blocking(move || {
            let txn = db.write_lazy()?;
            db.put_meta(&txn, key::COMMITTED, &committed)?;
            txn.commit()?;
            Ok(())
        })
        .await?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let db = self.db.clone();
        let committed: Option<Option<LogId>> = blocking(move || db.meta(key::COMMITTED)).await?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        blocking(move || {
            let txn = db.write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for entry in &entries {
                    let sealed = db.seal(entry)?;
                    table.insert(entry.log_id.index, sealed.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await?;
        // Durable now: tell openraft.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let db = self.db.clone();
        let from = last_log_id.map_or(0, |l| l.index + 1);
        Ok(blocking(move || {
            let txn = db.write()?;
            txn.open_table(LOG)?
                .retain_in::<u64, _>(from.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await?)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let db = self.db.clone();
        Ok(blocking(move || {
            let txn = db.write()?;
            db.put_meta(&txn, key::PURGED, &log_id)?;
            txn.open_table(LOG)?
                .retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state_machine::StateMachine;
    use crate::store::Plain;
    use openraft::testing::log::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<TypeConfig>>
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Arc::new(Db::open(dir.path(), Arc::new(Plain)).expect("open store"));
            let sm = StateMachine::open(db.clone())
                .await
                .expect("open state machine");
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).await.unwrap();
    }
}
