//! Encryption at rest: every value the store writes to disk passes through an
//! [`AtRest`] sealer first, and every value it reads back through `open`.

use super::StoreError;

/// Seals values before they reach the disk (autolock) and opens them again.
///
/// The store applies it to every value it writes: log entries, the vote,
/// objects, snapshots and bookkeeping. Keys (log indexes, `kind`/`id` of
/// objects, fixed bookkeeping names) stay readable; they carry no secrets.
pub trait AtRest: Send + Sync {
    /// Returns the sealed form of `plain`.
    fn seal(&self, plain: &[u8]) -> Vec<u8>;
    /// Returns the plain form of a value sealed by [`AtRest::seal`], or
    /// [`StoreError::Sealed`] when it was sealed with another key or damaged.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// Stores values as they are: the state directory is protected only by file
/// permissions. Used until autolock is turned on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl AtRest for Plain {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        plain.to_vec()
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(sealed.to_vec())
    }
}
