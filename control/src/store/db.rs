//! The one redb file that holds a manager's Raft state: log, vote and
//! bookkeeping, the applied objects and the last snapshot. Every value is
//! JSON passed through the [`AtRest`] sealer.

use crate::error_chain::ErrorChain;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::objects::{Changes, Versioned};
use super::types::SnapshotMeta;
use super::{AtRest, StoreError};

/// File name of the store inside the state directory.
pub const STORE_FILE: &str = "raft.redb";

/// Raft log entries by index.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Bookkeeping values under the names in [`key`].
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Applied objects by (kind, id).
pub(crate) const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// The last snapshot's data, in chunks by position.
pub(crate) const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");

/// Names of the values in [`META`].
pub(crate) mod key {
    /// This member's Raft id and address ([`super::Owner`]).
    pub const MEMBER: &str = "member";
    pub const VOTE: &str = "vote";
    pub const COMMITTED: &str = "committed";
    /// Last purged log id.
    pub const PURGED: &str = "purged";
    /// Last log id applied to the objects.
    pub const APPLIED: &str = "applied";
    /// Membership as of the last applied entry.
    pub const MEMBERSHIP: &str = "membership";
    pub const SNAPSHOT_META: &str = "snapshot_meta";
}

/// Size of the chunks a snapshot is stored in.
const SNAPSHOT_STORE_CHUNK: usize = 1 << 20;

/// Creates `dir` (0700) and the store file (0600) before redb opens it, or
/// narrows existing ones to those modes: the store holds the cluster's
/// secrets (sealed, but its metadata is not for other users either).
fn private_file(dir: &Path, file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

/// Who owns a state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Owner {
    pub raft_id: u64,
    pub addr: String,
}

/// An open store file.
pub(crate) struct Db {
    db: Database,
    at_rest: Arc<dyn AtRest>,
    path: PathBuf,
}

impl Db {
    /// Opens (or creates) the store in `dir`. Waits up to two seconds for a
    /// previous user in this process to let go of the file.
    pub(crate) fn open(dir: &Path, at_rest: Arc<dyn AtRest>) -> Result<Db, StoreError> {
        let path = dir.join(STORE_FILE);
        private_file(dir, &path).map_err(|e| StoreError::Open {
            path: path.clone(),
            detail: e.chain().to_string(),
        })?;
        let mut attempts = 0;
        let db = loop {
            match Database::builder().create(&path) {
                Ok(db) => break db,
                Err(DatabaseError::DatabaseAlreadyOpen) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::InUse { path });
                }
                Err(e) => {
                    return Err(StoreError::Open {
                        path,
                        detail: e.chain().to_string(),
                    })
                }
            }
        };
        let this = Db { db, at_rest, path };
        // Create the tables so that readers never meet a missing one.
        let txn = this.write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(OBJECTS)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        Ok(this)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A write transaction that is durable once committed.
    pub(crate) fn write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }

    /// A write transaction that becomes durable with the next durable one
    /// (redb keeps commits in order): for hints that can be lost in a crash.
    pub(crate) fn write_lazy(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        Ok(txn)
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    pub(crate) fn seal<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            what: "value to store".into(),
            detail: e.chain().to_string(),
        })?;
        Ok(self.at_rest.seal(&plain))
    }

    pub(crate) fn unseal<T: DeserializeOwned>(
        &self,
        what: &str,
        sealed: &[u8],
    ) -> Result<T, StoreError> {
        let plain = self.at_rest.open(sealed)?;
        serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            what: what.to_string(),
            detail: e.chain().to_string(),
        })
    }

    /// Reads bookkeeping value `name`.
    pub(crate) fn get_meta<T: DeserializeOwned>(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        match table.get(name)? {
            Some(v) => Ok(Some(self.unseal(name, v.value())?)),
            None => Ok(None),
        }
    }

    /// Reads bookkeeping value `name` in its own read transaction.
    pub(crate) fn meta<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(META)?;
        self.get_meta(&table, name)
    }

    /// Writes bookkeeping value `name` inside `txn`.
    pub(crate) fn put_meta<T: Serialize>(
        &self,
        txn: &WriteTransaction,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let sealed = self.seal(value)?;
        txn.open_table(META)?.insert(name, sealed.as_slice())?;
        Ok(())
    }

    /// Writes bookkeeping value `name` in its own durable transaction.
    pub(crate) fn set_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let txn = self.write()?;
        self.put_meta(&txn, name, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes applied object changes inside `txn`.
    pub(crate) fn put_changes(
        &self,
        txn: &WriteTransaction,
        changes: &Changes,
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(OBJECTS)?;
        for ((kind, id), change) in &changes.map {
            match change {
                Some(v) => {
                    let sealed = self.seal(v)?;
                    table.insert((kind.as_str(), id.as_str()), sealed.as_slice())?;
                }
                None => {
                    table.remove((kind.as_str(), id.as_str()))?;
                }
            }
        }
        Ok(())
    }

    /// Replaces every object inside `txn`.
    pub(crate) fn replace_objects<'a>(
        &self,
        txn: &WriteTransaction,
        objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Versioned)>,
    ) -> Result<(), StoreError> {
        txn.delete_table(OBJECTS)?;
        let mut table = txn.open_table(OBJECTS)?;
        for (kind, id, v) in objects {
            let sealed = self.seal(v)?;
            table.insert((kind, id), sealed.as_slice())?;
        }
        Ok(())
    }

    /// Every stored object.
    pub(crate) fn load_objects(&self) -> Result<Vec<(String, String, Versioned)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (kind, id) = k.value();
            let what = format!("object {kind}/{id}");
            out.push((
                kind.to_string(),
                id.to_string(),
                self.unseal(&what, v.value())?,
            ));
        }
        Ok(out)
    }

    /// Stores `data` as the current snapshot inside `txn`, replacing the
    /// previous one.
    pub(crate) fn put_snapshot(
        &self,
        txn: &WriteTransaction,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<(), StoreError> {
        txn.delete_table(SNAPSHOT)?;
        let mut table = txn.open_table(SNAPSHOT)?;
        for (i, chunk) in data.chunks(SNAPSHOT_STORE_CHUNK).enumerate() {
            table.insert(i as u64, self.at_rest.seal(chunk).as_slice())?;
        }
        self.put_meta(txn, key::SNAPSHOT_META, meta)
    }

    /// The current snapshot, if one was built or installed.
    pub(crate) fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let meta_table = txn.open_table(META)?;
        let Some(meta) = self.get_meta::<SnapshotMeta>(&meta_table, key::SNAPSHOT_META)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        for row in txn.open_table(SNAPSHOT)?.iter()? {
            let (_, v) = row?;
            data.extend_from_slice(&self.at_rest.open(v.value())?);
        }
        Ok(Some((meta, data)))
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Stopped(format!("store task failed: {}", e.chain())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Plain;

    /// Seals by flipping bits: enough to see that nothing is stored plain.
    struct Flip;
    impl AtRest for Flip {
        fn seal(&self, plain: &[u8]) -> Vec<u8> {
            plain.iter().map(|b| b ^ 0xa5).collect()
        }
        fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
            Ok(self.seal(sealed))
        }
    }

    fn file_contains(dir: &Path, needle: &[u8]) -> bool {
        let bytes = std::fs::read(dir.join(STORE_FILE)).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn every_value_goes_through_the_sealer() {
        for (sealer, plain_on_disk) in [
            (Arc::new(Plain) as Arc<dyn AtRest>, true),
            (Arc::new(Flip) as Arc<dyn AtRest>, false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = Db::open(dir.path(), sealer.clone()).unwrap();
                let mut changes = Changes::default();
                changes.map.insert(
                    ("cluster".into(), "c".into()),
                    Some(Versioned {
                        version: 1,
                        value: serde_json::json!("secret-marker-1"),
                    }),
                );
                let txn = db.write().unwrap();
                db.put_changes(&txn, &changes).unwrap();
                db.put_meta(&txn, key::VOTE, &"secret-marker-2").unwrap();
                db.put_snapshot(&txn, &SnapshotMeta::default(), b"secret-marker-3")
                    .unwrap();
                txn.commit().unwrap();
            }
            for marker in ["secret-marker-1", "secret-marker-2", "secret-marker-3"] {
                assert_eq!(
                    file_contains(dir.path(), marker.as_bytes()),
                    plain_on_disk,
                    "{marker}"
                );
            }
            let db = Db::open(dir.path(), sealer).unwrap();
            let objects = db.load_objects().unwrap();
            assert_eq!(objects[0].2.value, serde_json::json!("secret-marker-1"));
            let (_, data) = db.load_snapshot().unwrap().unwrap();
            assert_eq!(data, b"secret-marker-3");
        }
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let _db = Db::open(dir.path(), Arc::new(Plain)).unwrap();
        let err = Db::open(dir.path(), Arc::new(Plain)).err().unwrap();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    }
}
