//! What a write asks of the replicated store, and what it answers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A change to the objects, replicated through the Raft log and applied in
/// log order on every manager.
///
/// `expect_version` makes a write conditional (optimistic concurrency):
/// `None` writes unconditionally, `Some(v)` only if the object's current
/// version is `v`, and `Some(0)` only if the object does not exist yet
/// (versions are log indexes of writes, which are never 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces object `kind`/`id`.
    Set {
        kind: String,
        id: String,
        value: serde_json::Value,
        expect_version: Option<u64>,
    },
    /// Removes object `kind`/`id`.
    Delete {
        kind: String,
        id: String,
        expect_version: Option<u64>,
    },
    /// All of the commands, in order, or none of them: the first one that
    /// fails leaves the store unchanged and is the answer.
    Batch(Vec<Command>),
}

/// The outcome of one [`Command`] (or of a Raft-internal entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; `version` is the log index of this write, the new version of
    /// every object it touched.
    Ok { version: u64 },
    /// `expect_version` did not match: nothing changed. `current` is the
    /// object's version now (`None`: it does not exist).
    Conflict {
        kind: String,
        id: String,
        current: Option<u64>,
    },
    /// A delete named an object that does not exist: nothing changed.
    NotFound { kind: String, id: String },
}

impl Command {
    /// A `Set` from any serializable value.
    pub fn set<T: Serialize>(
        kind: &str,
        id: &str,
        value: &T,
        expect_version: Option<u64>,
    ) -> Result<Command, serde_json::Error> {
        Ok(Command::Set {
            kind: kind.to_string(),
            id: id.to_string(),
            value: serde_json::to_value(value)?,
            expect_version,
        })
    }

    /// A `Delete`.
    pub fn delete(kind: &str, id: &str, expect_version: Option<u64>) -> Command {
        Command::Delete {
            kind: kind.to_string(),
            id: id.to_string(),
            expect_version,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Set { kind, id, .. } => write!(f, "set {kind}/{id}"),
            Command::Delete { kind, id, .. } => write!(f, "delete {kind}/{id}"),
            Command::Batch(cmds) => write!(f, "batch of {}", cmds.len()),
        }
    }
}

impl Response {
    /// True for [`Response::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Response::Ok { .. })
    }
}
