//! Encryption at rest for managers, as Swarm does it: the Raft store is
//! always encrypted with a data key (DEK) kept in the state dir; autolock
//! seals that key file and the node's TLS key with the operator's unlock key
//! (KEK), so a stolen disk, or a restarted manager, reveals nothing until
//! `shoal swarm unlock`.

use shoal_control::error_chain::ErrorChain;
use std::io;
use std::path::Path;

use shoal_control::ca::{self, UnlockKey};
use shoal_control::hex;
use shoal_control::store::{AtRest, StoreError};

const PLAIN: &str = "shoal-plain-v1\n";
const SEALED: &str = "shoal-sealed-v1\n";

/// Why a secret file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"shoal swarm unlock\" to unlock it.")]
    Locked,
    #[error("invalid unlock key: it does not open this manager's keys")]
    WrongKey,
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        cause: io::Error,
    },
    #[error("{0} is damaged: unknown format")]
    Damaged(String),
}

/// Seals every value of the Raft store with the data key.
pub struct DekSealer(pub UnlockKey);

impl AtRest for DekSealer {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        // Sealing only fails if the system RNG does; nothing sane can follow.
        ca::seal(&self.0, plain).unwrap_or_else(|e| panic!("cannot seal Raft data: {e}"))
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        ca::open(&self.0, sealed).map_err(|e| StoreError::Sealed(e.chain().to_string()))
    }
}

/// A secret as it is stored: sealed with `kek` when autolock is on.
pub fn seal_secret(secret: &[u8], kek: Option<&UnlockKey>) -> io::Result<Vec<u8>> {
    Ok(match kek {
        Some(kek) => {
            let sealed =
                ca::seal(kek, secret).map_err(|e| io::Error::other(e.chain().to_string()))?;
            format!("{SEALED}{}", hex::encode(&sealed)).into_bytes()
        }
        None => [PLAIN.as_bytes(), secret].concat(),
    })
}

/// Whether a stored secret is sealed (the node is autolocked).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(SEALED.as_bytes())
}

/// Opens a secret stored by [`seal_secret`] (read from `path`, named in
/// errors); sealed ones need `kek`.
pub fn open_secret(
    path: &Path,
    bytes: &[u8],
    kek: Option<&UnlockKey>,
) -> Result<Vec<u8>, SecretError> {
    if let Some(plain) = bytes.strip_prefix(PLAIN.as_bytes()) {
        return Ok(plain.to_vec());
    }
    if let Some(sealed) = bytes.strip_prefix(SEALED.as_bytes()) {
        let kek = kek.ok_or(SecretError::Locked)?;
        let sealed =
            unhex(sealed).ok_or_else(|| SecretError::Damaged(path.display().to_string()))?;
        return ca::open(kek, &sealed).map_err(|_| SecretError::WrongKey);
    }
    // A key file from before this format: a plain PEM.
    if bytes.starts_with(b"-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    Err(SecretError::Damaged(path.display().to_string()))
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    hex::decode(std::str::from_utf8(text).ok()?.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_plain_and_sealed() {
        let path = Path::new("dek");
        let kek = UnlockKey::generate().unwrap();
        let plain = seal_secret(b"data key", None).unwrap();
        assert!(!is_sealed(&plain));
        assert_eq!(open_secret(path, &plain, None).unwrap(), b"data key");
        let sealed = seal_secret(b"data key", Some(&kek)).unwrap();
        assert!(is_sealed(&sealed));
        assert!(
            !sealed.windows(8).any(|w| w == b"data key"),
            "sealed file shows the secret"
        );
        assert!(matches!(
            open_secret(path, &sealed, None),
            Err(SecretError::Locked)
        ));
        let other = UnlockKey::generate().unwrap();
        assert!(matches!(
            open_secret(path, &sealed, Some(&other)),
            Err(SecretError::WrongKey)
        ));
        assert_eq!(open_secret(path, &sealed, Some(&kek)).unwrap(), b"data key");
        assert!(matches!(
            open_secret(path, b"junk", None),
            Err(SecretError::Damaged(_))
        ));
    }
}
