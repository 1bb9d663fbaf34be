//! The state machine: applies committed [`Command`]s to the objects, durably
//! (one redb transaction per applied batch), and publishes the result as an
//! [`Objects`] view that reads take without waiting for Raft.
//!
//! Snapshots are the objects serialized as JSON, stored in the same file and
//! installed by replacing every object at once.

use crate::error_chain::ErrorChain;
use std::io;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::db::{blocking, key, Db, META};
use super::objects::{Changes, Objects, Versioned};
use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use super::{Response, StoreError};

/// Version of the snapshot format written by this code.
const SNAPSHOT_FORMAT: u32 = 1;

/// What the state machine has applied, as one consistent unit.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    pub objects: Objects,
    pub log_id: Option<LogId>,
    pub membership: StoredMembership,
}

/// The latest applied state, shared between the state machine (the only
/// writer) and readers.
pub(crate) struct AppliedView {
    state: RwLock<Applied>,
    index_tx: watch::Sender<Option<u64>>,
}

impl AppliedView {
    fn new(applied: Applied) -> AppliedView {
        let (index_tx, _) = watch::channel(applied.log_id.as_ref().map(|l| l.index));
        AppliedView {
            state: RwLock::new(applied),
            index_tx,
        }
    }

    pub(crate) fn current(&self) -> Applied {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn objects(&self) -> Objects {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .objects
            .clone()
    }

    /// Watches the applied log index.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.index_tx.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut Applied)) {
        let index = {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut state);
            state.log_id.as_ref().map(|l| l.index)
        };
        self.index_tx.send_replace(index);
    }
}

/// openraft's state machine over the store file.
pub struct StateMachine {
    db: Arc<Db>,
    view: Arc<AppliedView>,
}

impl StateMachine {
    /// Loads the applied state from the store.
    pub(crate) async fn open(db: Arc<Db>) -> Result<StateMachine, StoreError> {
        let loader = db.clone();
        let applied = blocking(move || {
            let log_id: Option<LogId> = loader.meta::<Option<LogId>>(key::APPLIED)?.flatten();
            let membership: StoredMembership = loader.meta(key::MEMBERSHIP)?.unwrap_or_default();
            let objects =
                Objects::from_objects(loader.load_objects()?, log_id.as_ref().map(|l| l.index));
            Ok(Applied {
                objects,
                log_id,
                membership,
            })
        })
        .await?;
        Ok(StateMachine {
            db,
            view: Arc::new(AppliedView::new(applied)),
        })
    }

    pub(crate) fn view(&self) -> Arc<AppliedView> {
        self.view.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.view.current();
        Ok((state.log_id, state.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let base = self.view.current();
        let mut changes = Changes::default();
        let mut log_id = base.log_id;
        let mut membership = base.membership.clone();
        let mut replies = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let index = entry.log_id.index;
            let response = match &entry.payload {
                EntryPayload::Blank => Response::Ok { version: index },
                EntryPayload::Normal(cmd) => changes.stage(&base.objects, cmd, index),
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::Ok { version: index }
                }
            };
            log_id = Some(entry.log_id);
            if let Some(responder) = responder {
                replies.push((responder, response));
            }
        }
        if log_id == base.log_id {
            return Ok(());
        }
        // Let go of the base view, so that the update below changes the
        // objects in place instead of copying the kinds it touches.
        drop(base);

        let db = self.db.clone();
        let (stored_changes, stored_log_id, stored_membership) =
            (changes.clone(), log_id, membership.clone());
        blocking(move || {
            let txn = db.write()?;
            if !stored_changes.is_empty() {
                db.put_changes(&txn, &stored_changes)?;
            }
            db.put_meta(&txn, key::APPLIED, &stored_log_id)?;
            db.put_meta(&txn, key::MEMBERSHIP, &stored_membership)?;
            txn.commit()?;
            Ok(())
        })
        .await?;

        self.view.update(|state| {
            state
                .objects
                .apply(&changes, log_id.as_ref().map(|l| l.index));
            state.log_id = log_id;
            state.membership = membership;
        });
        for (responder, response) in replies {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.view.current(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let index = meta.last_log_id.as_ref().map(|l| l.index);
        let objects = Objects::from_objects(decode_snapshot(&data)?, index);
        let db = self.db.clone();
        let (stored_meta, stored_objects) = (meta.clone(), objects.clone());
        blocking(move || {
            let txn = db.write()?;
            db.replace_objects(&txn, stored_objects.iter_all())?;
            db.put_meta(&txn, key::APPLIED, &stored_meta.last_log_id)?;
            db.put_meta(&txn, key::MEMBERSHIP, &stored_meta.last_membership)?;
            db.put_snapshot(&txn, &stored_meta, &data)?;
            txn.commit()?;
            Ok(())
        })
        .await?;
        tracing::info!(
            objects = objects.len(),
            last_log_id = ?meta.last_log_id,
            "installed a Raft snapshot"
        );
        let meta = meta.clone();
        self.view.update(|state| {
            *state = Applied {
                objects,
                log_id: meta.last_log_id,
                membership: meta.last_membership,
            }
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let db = self.db.clone();
        let stored = blocking(move || db.load_snapshot()).await?;
        Ok(stored.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    state: Applied,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let db = self.db.clone();
        let state = self.state.clone();
        let snapshot = blocking(move || {
            let meta = SnapshotMeta {
                last_log_id: state.log_id,
                last_membership: state.membership.clone(),
            };
            let data = encode_snapshot(&state.objects)?;
            let txn = db.write()?;
            let stored: Option<SnapshotMeta> = {
                let table = txn.open_table(META)?;
                db.get_meta(&table, key::SNAPSHOT_META)?
            };
            // Never replace a newer snapshot (one installed meanwhile).
            if stored.is_none_or(|s| s.last_log_id <= meta.last_log_id) {
                db.put_snapshot(&txn, &meta, &data)?;
            }
            txn.commit()?;
            Ok(Snapshot {
                meta,
                snapshot: data,
            })
        })
        .await?;
        tracing::info!(
            bytes = snapshot.snapshot.len(),
            last_log_id = ?snapshot.meta.last_log_id,
            "built a Raft snapshot"
        );
        Ok(snapshot)
    }
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: u32,
    objects: Vec<ObjectOut<'a>>,
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    kind: &'a str,
    id: &'a str,
    version: u64,
    value: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct SnapshotIn {
    format: u32,
    objects: Vec<ObjectIn>,
}

#[derive(Deserialize)]
struct ObjectIn {
    kind: String,
    id: String,
    version: u64,
    value: serde_json::Value,
}

/// Serializes every object for a snapshot.
pub(crate) fn encode_snapshot(objects: &Objects) -> Result<Vec<u8>, StoreError> {
    let body = SnapshotOut {
        format: SNAPSHOT_FORMAT,
        objects: objects
            .iter_all()
            .map(|(kind, id, v)| ObjectOut {
                kind,
                id,
                version: v.version,
                value: &v.value,
            })
            .collect(),
    };
    serde_json::to_vec(&body).map_err(|e| StoreError::Corrupt {
        what: "snapshot being built".into(),
        detail: e.chain().to_string(),
    })
}

/// Reads the objects of a snapshot.
pub(crate) fn decode_snapshot(data: &[u8]) -> Result<Vec<(String, String, Versioned)>, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "snapshot".into(),
        detail,
    };
    let body: SnapshotIn =
        serde_json::from_slice(data).map_err(|e| corrupt(e.chain().to_string()))?;
    if body.format != SNAPSHOT_FORMAT {
        return Err(corrupt(format!(
            "format {} is not {SNAPSHOT_FORMAT}: upgrade this manager to the version of the others",
            body.format
        )));
    }
    Ok(body
        .objects
        .into_iter()
        .map(|o| {
            (
                o.kind,
                o.id,
                Versioned {
                    version: o.version,
                    value: o.value,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn snapshots_round_trip() {
        let mut objects = Objects::default();
        let mut changes = Changes::default();
        for (i, kind) in ["node", "cluster", "node"].iter().enumerate() {
            let cmd =
                Command::set(kind, &format!("id{i}"), &serde_json::json!({"n": i}), None).unwrap();
            changes.stage(&objects, &cmd, i as u64 + 1);
        }
        objects.apply(&changes, Some(3));
        let data = encode_snapshot(&objects).unwrap();
        let back = Objects::from_objects(decode_snapshot(&data).unwrap(), Some(3));
        let all = |o: &Objects| {
            o.iter_all()
                .map(|(k, i, v)| (k.to_string(), i.to_string(), v.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(&back), all(&objects));
        assert!(decode_snapshot(b"{\"format\":9,\"objects\":[]}").is_err());
    }
}
