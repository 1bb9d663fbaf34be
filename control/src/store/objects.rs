//! The state machine's contents, versioned objects grouped by kind, and the
//! pure logic that applies a [`Command`] to them.
//!
//! [`Objects`] is an immutable view: cloning it is cheap, and a clone keeps
//! showing the state at the log index it was taken at. Holding a view while
//! writes are applied makes each of them copy the kinds it touches, so take
//! a fresh one per decision rather than keeping one around.

use crate::error_chain::ErrorChain;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Command, Response, StoreError};

/// An object's value and its version: the log index of its last write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T = serde_json::Value> {
    pub version: u64,
    pub value: T,
}

type Kind = BTreeMap<String, Arc<Versioned>>;

/// The objects as applied up to [`Objects::applied_index`].
#[derive(Clone, Debug, Default)]
pub struct Objects {
    applied: Option<u64>,
    kinds: Arc<BTreeMap<String, Arc<Kind>>>,
}

impl Objects {
    /// Object `kind`/`id`, if it exists.
    pub fn get(&self, kind: &str, id: &str) -> Option<&Versioned> {
        self.kinds.get(kind)?.get(id).map(|v| v.as_ref())
    }

    /// Every object of `kind`, ordered by id.
    pub fn list(&self, kind: &str) -> impl Iterator<Item = (&str, &Versioned)> + '_ {
        self.kinds
            .get(kind)
            .into_iter()
            .flat_map(|k| k.iter().map(|(id, v)| (id.as_str(), v.as_ref())))
    }

    /// Object `kind`/`id` decoded as `T`.
    pub fn get_as<T: DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.get(kind, id).map(|v| decode(kind, id, v)).transpose()
    }

    /// Every object of `kind` decoded as `T`, ordered by id.
    pub fn list_as<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, Versioned<T>)>, StoreError> {
        self.list(kind)
            .map(|(id, v)| Ok((id.to_string(), decode(kind, id, v)?)))
            .collect()
    }

    /// How many objects of `kind` exist.
    pub fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).map_or(0, |k| k.len())
    }

    /// How many objects exist, of every kind.
    pub fn len(&self) -> usize {
        self.kinds.values().map(|k| k.len()).sum()
    }

    /// True when no object exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kinds that have at least one object.
    pub fn kinds(&self) -> impl Iterator<Item = &str> + '_ {
        self.kinds.keys().map(|k| k.as_str())
    }

    /// The log index this view reflects (`None` before anything was applied).
    pub fn applied_index(&self) -> Option<u64> {
        self.applied
    }

    /// Every object as `(kind, id, versioned)`.
    pub(crate) fn iter_all(&self) -> impl Iterator<Item = (&str, &str, &Versioned)> + '_ {
        self.kinds.iter().flat_map(|(kind, objs)| {
            objs.iter()
                .map(move |(id, v)| (kind.as_str(), id.as_str(), v.as_ref()))
        })
    }

    /// Builds a view from stored objects.
    pub(crate) fn from_objects(
        objects: impl IntoIterator<Item = (String, String, Versioned)>,
        applied: Option<u64>,
    ) -> Objects {
        let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
        for (kind, id, v) in objects {
            kinds.entry(kind).or_default().insert(id, Arc::new(v));
        }
        Objects {
            applied,
            kinds: Arc::new(kinds.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
        }
    }

    /// Applies staged changes and moves the view to `applied`. Only the kinds
    /// touched are copied, and only if an older view still shares them.
    pub(crate) fn apply(&mut self, changes: &Changes, applied: Option<u64>) {
        let kinds = Arc::make_mut(&mut self.kinds);
        for ((kind, id), change) in &changes.map {
            match change {
                Some(v) => {
                    let objs = Arc::make_mut(kinds.entry(kind.clone()).or_default());
                    objs.insert(id.clone(), Arc::new(v.clone()));
                }
                None => {
                    if let Some(objs) = kinds.get_mut(kind) {
                        Arc::make_mut(objs).remove(id);
                        if objs.is_empty() {
                            kinds.remove(kind);
                        }
                    }
                }
            }
        }
        self.applied = applied;
    }
}

fn decode<T: DeserializeOwned>(
    kind: &str,
    id: &str,
    v: &Versioned,
) -> Result<Versioned<T>, StoreError> {
    let value = T::deserialize(&v.value).map_err(|e| StoreError::Decode {
        kind: kind.to_string(),
        id: id.to_string(),
        ty: std::any::type_name::<T>(),
        detail: e.chain().to_string(),
    })?;
    Ok(Versioned {
        version: v.version,
        value,
    })
}

/// Writes staged on top of an [`Objects`] view but not applied to it yet:
/// `None` deletes. Later commands of one apply batch see earlier ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    pub(crate) map: BTreeMap<(String, String), Option<Versioned>>,
}

impl Changes {
    /// Applies `cmd` at log `index` on top of `base` and of what is already
    /// staged. A failing command stages nothing and is the answer.
    pub(crate) fn stage(&mut self, base: &Objects, cmd: &Command, index: u64) -> Response {
        let mut scratch = Changes::default();
        match stage_into(base, self, &mut scratch, cmd, index) {
            Ok(()) => {
                self.map.extend(scratch.map);
                Response::Ok { version: index }
            }
            Err(refusal) => refusal,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The version of `kind`/`id` as seen through `scratch`, then `staged`, then `base`.
fn current_version(
    base: &Objects,
    staged: &Changes,
    scratch: &Changes,
    kind: &str,
    id: &str,
) -> Option<u64> {
    let key = (kind.to_string(), id.to_string());
    match scratch.map.get(&key).or_else(|| staged.map.get(&key)) {
        Some(change) => change.as_ref().map(|v| v.version),
        None => base.get(kind, id).map(|v| v.version),
    }
}

fn stage_into(
    base: &Objects,
    staged: &Changes,
    scratch: &mut Changes,
    cmd: &Command,
    index: u64,
) -> Result<(), Response> {
    match cmd {
        Command::Set {
            kind,
            id,
            value,
            expect_version,
        } => {
            let current = current_version(base, staged, scratch, kind, id);
            if let Some(expected) = expect_version {
                if current.unwrap_or(0) != *expected {
                    return Err(Response::Conflict {
                        kind: kind.clone(),
                        id: id.clone(),
                        current,
                    });
                }
            }
            scratch.map.insert(
                (kind.clone(), id.clone()),
                Some(Versioned {
                    version: index,
                    value: value.clone(),
                }),
            );
        }
        Command::Delete {
            kind,
            id,
            expect_version,
        } => {
            let Some(current) = current_version(base, staged, scratch, kind, id) else {
                return Err(Response::NotFound {
                    kind: kind.clone(),
                    id: id.clone(),
                });
            };
            if expect_version.is_some_and(|expected| expected != current) {
                return Err(Response::Conflict {
                    kind: kind.clone(),
                    id: id.clone(),
                    current: Some(current),
                });
            }
            scratch.map.insert((kind.clone(), id.clone()), None);
        }
        Command::Batch(cmds) => {
            for cmd in cmds {
                stage_into(base, staged, scratch, cmd, index)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn set(kind: &str, id: &str, v: i64, expect: Option<u64>) -> Command {
        Command::Set {
            kind: kind.into(),
            id: id.into(),
            value: json!(v),
            expect_version: expect,
        }
    }

    fn apply(objects: &mut Objects, cmd: &Command, index: u64) -> Response {
        let mut changes = Changes::default();
        let resp = changes.stage(objects, cmd, index);
        objects.apply(&changes, Some(index));
        resp
    }

    #[test]
    fn versions_are_the_index_of_the_last_write() {
        let mut o = Objects::default();
        assert_eq!(
            apply(&mut o, &set("node", "a", 1, None), 3),
            Response::Ok { version: 3 }
        );
        assert_eq!(
            apply(&mut o, &set("node", "a", 2, None), 7),
            Response::Ok { version: 7 }
        );
        let v = o.get("node", "a").unwrap();
        assert_eq!((v.version, &v.value), (7, &json!(2)));
        assert_eq!(o.applied_index(), Some(7));
    }

    #[test]
    fn expect_version_refuses_stale_writes() {
        let mut o = Objects::default();
        // Some(0): create only.
        assert!(apply(&mut o, &set("node", "a", 1, Some(0)), 1).is_ok());
        assert_eq!(
            apply(&mut o, &set("node", "a", 2, Some(0)), 2),
            Response::Conflict {
                kind: "node".into(),
                id: "a".into(),
                current: Some(1)
            }
        );
        assert_eq!(
            apply(&mut o, &set("node", "a", 2, Some(5)), 3),
            Response::Conflict {
                kind: "node".into(),
                id: "a".into(),
                current: Some(1)
            }
        );
        assert!(apply(&mut o, &set("node", "a", 2, Some(1)), 4).is_ok());
        assert_eq!(o.get("node", "a").unwrap().value, json!(2));
        assert_eq!(
            apply(&mut o, &set("node", "b", 2, Some(9)), 5),
            Response::Conflict {
                kind: "node".into(),
                id: "b".into(),
                current: None
            }
        );
    }

    #[test]
    fn delete_checks_existence_and_version() {
        let mut o = Objects::default();
        assert_eq!(
            apply(&mut o, &Command::delete("node", "a", None), 1),
            Response::NotFound {
                kind: "node".into(),
                id: "a".into()
            }
        );
        apply(&mut o, &set("node", "a", 1, None), 2);
        assert!(matches!(
            apply(&mut o, &Command::delete("node", "a", Some(1)), 3),
            Response::Conflict {
                current: Some(2),
                ..
            }
        ));
        assert!(apply(&mut o, &Command::delete("node", "a", Some(2)), 4).is_ok());
        assert!(o.get("node", "a").is_none());
        assert_eq!(o.kinds().count(), 0);
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let mut o = Objects::default();
        apply(&mut o, &set("node", "a", 1, None), 1);
        let failing = Command::Batch(vec![
            set("node", "b", 1, None),
            set("node", "a", 9, Some(0)),
        ]);
        assert!(matches!(
            apply(&mut o, &failing, 2),
            Response::Conflict { .. }
        ));
        assert!(o.get("node", "b").is_none());
        assert_eq!(o.get("node", "a").unwrap().value, json!(1));

        // Later commands of a batch see the earlier ones.
        let ok = Command::Batch(vec![
            set("node", "b", 1, Some(0)),
            set("node", "b", 2, Some(3)),
            Command::delete("node", "a", Some(1)),
        ]);
        assert_eq!(apply(&mut o, &ok, 3), Response::Ok { version: 3 });
        assert_eq!(o.get("node", "b").unwrap().value, json!(2));
        assert!(o.get("node", "a").is_none());
    }

    #[test]
    fn commands_of_one_apply_batch_see_each_other() {
        let o = Objects::default();
        let mut changes = Changes::default();
        assert!(changes.stage(&o, &set("node", "a", 1, Some(0)), 1).is_ok());
        assert!(matches!(
            changes.stage(&o, &set("node", "a", 1, Some(0)), 2),
            Response::Conflict {
                current: Some(1),
                ..
            }
        ));
    }

    #[test]
    fn old_views_do_not_change() {
        let mut o = Objects::default();
        apply(&mut o, &set("node", "a", 1, None), 1);
        let old = o.clone();
        apply(&mut o, &set("node", "a", 2, None), 2);
        assert_eq!(old.get("node", "a").unwrap().value, json!(1));
        assert_eq!(o.get("node", "a").unwrap().value, json!(2));
    }

    #[test]
    fn typed_reads_name_the_object_that_does_not_decode() {
        let mut o = Objects::default();
        apply(&mut o, &set("node", "a", 1, None), 1);
        let n: Versioned<i64> = o.get_as("node", "a").unwrap().unwrap();
        assert_eq!(n.value, 1);
        let err = o.get_as::<String>("node", "a").unwrap_err();
        assert!(err.to_string().contains("node/a"), "{err}");
        assert_eq!(o.list_as::<i64>("node").unwrap().len(), 1);
    }

    proptest! {
        /// Applying commands one by one equals replaying them into a plain map.
        #[test]
        fn matches_a_plain_map(ops in proptest::collection::vec((0u8..3, 0u8..4, any::<bool>()), 1..60)) {
            let mut o = Objects::default();
            let mut model: BTreeMap<String, u64> = BTreeMap::new();
            for (i, (op, id, conditional)) in ops.into_iter().enumerate() {
                let index = i as u64 + 1;
                let id = format!("o{id}");
                let current = model.get(&id).copied();
                let expect = conditional.then(|| current.unwrap_or(0));
                let cmd = match op {
                    0 | 1 => set("k", &id, index as i64, expect),
                    _ => Command::delete("k", &id, expect),
                };
                let resp = apply(&mut o, &cmd, index);
                match (op, current) {
                    (2, None) => prop_assert!(matches!(resp, Response::NotFound { .. }), "{:?}", resp),
                    (2, Some(_)) => { prop_assert!(resp.is_ok()); model.remove(&id); }
                    _ => { prop_assert!(resp.is_ok()); model.insert(id.clone(), index); }
                }
            }
            let got: BTreeMap<String, u64> =
                o.list("k").map(|(id, v)| (id.to_string(), v.version)).collect();
            prop_assert_eq!(got, model);
        }
    }
}
