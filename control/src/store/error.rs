//! The store's errors, each saying what failed and what to do about it.

use crate::error_chain::ErrorChain;
use std::path::PathBuf;

/// Why the replicated store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the Raft store {} is in use by another process: stop the other shoal agent using this state directory first",
        path.display()
    )]
    InUse { path: PathBuf },

    #[error("cannot open the Raft store {}: {detail}", path.display())]
    Open { path: PathBuf, detail: String },

    #[error("Raft store I/O failed: {0}; check the disk holding the state directory")]
    Io(String),

    #[error("the Raft store holds corrupt data ({what}): {detail}; restore the state directory from a backup")]
    Corrupt { what: String, detail: String },

    #[error("cannot decrypt the Raft store: {0}; unlock the manager with the current unlock key")]
    Sealed(String),

    #[error(
        "the state directory belongs to Raft member {stored}, not {requested}: use the state directory of member {requested}, or a new one"
    )]
    WrongMember { stored: u64, requested: u64 },

    #[error("object {kind}/{id} does not decode as {ty}: {detail}")]
    Decode {
        kind: String,
        id: String,
        ty: &'static str,
        detail: String,
    },

    #[error("this manager already belongs to a Raft group: it cannot initialize a new one")]
    AlreadyInitialized,

    #[error("invalid Raft member address `{addr}`: {detail}")]
    BadAddress { addr: String, detail: String },

    #[error("the state directory holds no Raft state: there is nothing to recover; start a new swarm instead")]
    Empty,

    #[error("invalid Raft timing: {0}")]
    Tuning(String),

    #[error("the Raft member has stopped: {0}")]
    Stopped(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Io(e.chain().to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        })*
    };
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        std::io::Error::other(e)
    }
}
