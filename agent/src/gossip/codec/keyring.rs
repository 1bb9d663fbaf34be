//! The cluster's gossip keys, by id: messages are sealed with the primary and
//! opened with any key held, so keys rotate without a restart. Each message
//! key is derived per sender and sender epoch (HKDF-SHA256), which makes the
//! counter nonce unique without coordination between nodes.

use std::collections::BTreeMap;
use std::fmt;

use ring::aead::{self, LessSafeKey, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::{CodecError, SenderId};

/// Names a key on the wire, so a receiver knows which one to open with.
pub type KeyId = u32;

/// Length of a cluster gossip key.
pub const KEY_LEN: usize = 32;

/// Salt of the per-sender key derivation; changes with the wire version.
const HKDF_SALT: &[u8] = b"shoal gossip v2";

/// A 256-bit cluster gossip key. Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// A key as distributed by the managers: exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CodecError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(SecretKey)
            .map_err(|_| CodecError::BadKeyLength(bytes.len()))
    }

    /// A fresh random key from the system's CSPRNG.
    pub fn generate() -> Result<Self, CodecError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| CodecError::Crypto("no system randomness"))?;
        Ok(SecretKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The keys a node holds. Rotation, as the managers should drive it:
/// [`Keyring::insert`] the new key everywhere, then [`Keyring::set_primary`]
/// everywhere, then [`Keyring::remove`] the old one. [`Keyring::rotate`] does
/// the first two at once on one node.
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: KeyId,
    keys: BTreeMap<KeyId, SecretKey>,
}

impl Keyring {
    /// A ring holding one key, which is the primary.
    pub fn new(id: KeyId, key: SecretKey) -> Self {
        Keyring {
            primary: id,
            keys: BTreeMap::from([(id, key)]),
        }
    }

    /// The key new messages are sealed with.
    pub fn primary(&self) -> KeyId {
        self.primary
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    /// Ids of every key held, in order.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// Adds (or replaces) a key that messages may be opened with.
    pub fn insert(&mut self, id: KeyId, key: SecretKey) {
        self.keys.insert(id, key);
    }

    /// Seals new messages with key `id`, which must be held.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), CodecError> {
        if !self.contains(id) {
            return Err(CodecError::UnknownKey(id));
        }
        self.primary = id;
        Ok(())
    }

    /// Adds a key and makes it the primary; older keys still open messages
    /// until removed.
    pub fn rotate(&mut self, id: KeyId, key: SecretKey) {
        self.keys.insert(id, key);
        self.primary = id;
    }

    /// Drops a key; the primary cannot be dropped.
    pub fn remove(&mut self, id: KeyId) -> Result<(), CodecError> {
        if id == self.primary {
            return Err(CodecError::RemovePrimary(id));
        }
        self.keys
            .remove(&id)
            .map(|_| ())
            .ok_or(CodecError::UnknownKey(id))
    }

    /// The message key of `sender`'s run `epoch` under key `id`; `None` when
    /// the key is not held.
    pub(super) fn message_key(
        &self,
        id: KeyId,
        sender: SenderId,
        epoch: u64,
    ) -> Option<Result<LessSafeKey, CodecError>> {
        let secret = self.keys.get(&id)?;
        Some(derive(secret, sender, epoch))
    }
}

fn derive(secret: &SecretKey, sender: SenderId, epoch: u64) -> Result<LessSafeKey, CodecError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&secret.0);
    let sender = sender.to_be_bytes();
    let epoch = epoch.to_be_bytes();
    let info: [&[u8]; 2] = [&sender, &epoch];
    let okm = prk
        .expand(&info, &aead::CHACHA20_POLY1305)
        .map_err(|_| CodecError::Crypto("key derivation failed"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_cannot_be_removed_and_unknown_keys_cannot_be_primary() {
        let mut ring = Keyring::new(1, SecretKey::new([1; KEY_LEN]));
        assert!(matches!(ring.remove(1), Err(CodecError::RemovePrimary(1))));
        assert!(matches!(
            ring.set_primary(2),
            Err(CodecError::UnknownKey(2))
        ));
        ring.rotate(2, SecretKey::new([2; KEY_LEN]));
        assert_eq!(ring.primary(), 2);
        assert_eq!(ring.ids(), [1, 2]);
        ring.remove(1).expect("old key removable");
        assert!(!ring.contains(1));
    }

    #[test]
    fn keys_must_be_32_bytes_and_never_print() {
        assert!(matches!(
            SecretKey::from_slice(&[0; 16]),
            Err(CodecError::BadKeyLength(16))
        ));
        let key = SecretKey::generate().expect("randomness");
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
        assert_ne!(key, SecretKey::generate().expect("randomness"));
    }
}
