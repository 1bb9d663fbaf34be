//! Autolock: the operator-held key (`SWMKEY-1-...`) that encrypts a
//! manager's Raft data and TLS keys at rest, and the sealing itself
//! (ChaCha20-Poly1305 with a random 96-bit nonce in front of the ciphertext).

use std::fmt;
use std::str::FromStr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use super::encoding::{base36_decode, base36_encode, random_bytes};
use super::CaError;

/// What every unlock key starts with.
pub const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";
const KEY_LEN: usize = 32;
/// 32 bytes in base36.
const KEY_TEXT_LEN: usize = 50;

/// A 256-bit key the operator keeps (`shoal swarm unlock-key`). `Display`
/// shows it as `SWMKEY-1-<50 base36 chars>`; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey([u8; KEY_LEN]);

impl UnlockKey {
    /// A new random key.
    pub fn generate() -> Result<UnlockKey, CaError> {
        Ok(UnlockKey(random_bytes::<KEY_LEN>()?))
    }

    /// The raw key bytes (for key derivation; never log them).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn aead(&self) -> Result<LessSafeKey, CaError> {
        UnboundKey::new(&CHACHA20_POLY1305, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| {
                CaError::InvalidUnlockKey("ChaCha20-Poly1305 refused a 32-byte key".into())
            })
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{UNLOCK_KEY_PREFIX}{}",
            base36_encode(&self.0, KEY_TEXT_LEN)
        )
    }
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

impl FromStr for UnlockKey {
    type Err = CaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(UNLOCK_KEY_PREFIX) else {
            return Err(CaError::InvalidUnlockKey(format!(
                "it must start with `{UNLOCK_KEY_PREFIX}`; copy it from `shoal swarm unlock-key`"
            )));
        };
        if body.len() != KEY_TEXT_LEN {
            return Err(CaError::InvalidUnlockKey(format!(
                "expected {KEY_TEXT_LEN} base36 characters after `{UNLOCK_KEY_PREFIX}`, found {}",
                body.len()
            )));
        }
        let bytes = base36_decode(body, KEY_LEN).ok_or_else(|| {
            CaError::InvalidUnlockKey("it is not lowercase base36 of a 256-bit key".into())
        })?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes);
        Ok(UnlockKey(key))
    }
}

/// Encrypts and authenticates `plaintext` under `key`. The result is
/// `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
pub fn seal(key: &UnlockKey, plaintext: &[u8]) -> Result<Vec<u8>, CaError> {
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + CHACHA20_POLY1305.tag_len());
    out.extend_from_slice(&nonce_bytes);
    let mut body = plaintext.to_vec();
    key.aead()?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::empty(),
            &mut body,
        )
        .map_err(|_| CaError::Seal)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts what [`seal`] produced; fails with [`CaError::Unseal`] on a
/// wrong key, or on data that was altered or truncated.
pub fn open(key: &UnlockKey, sealed: &[u8]) -> Result<Vec<u8>, CaError> {
    if sealed.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
        return Err(CaError::Unseal);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CaError::Unseal)?;
    let mut body = body.to_vec();
    let plain_len = key
        .aead()?
        .open_in_place(nonce, Aad::empty(), &mut body)
        .map_err(|_| CaError::Unseal)?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_round_trips_and_is_redacted_in_debug() {
        let key = UnlockKey::generate().unwrap();
        let text = key.to_string();
        assert!(text.starts_with("SWMKEY-1-"));
        assert_eq!(text.len(), 9 + 50);
        assert_eq!(text.parse::<UnlockKey>().unwrap(), key);
        assert_eq!(format!("{text}\n").parse::<UnlockKey>().unwrap(), key);
        assert_eq!(format!("{key:?}"), "UnlockKey(<redacted>)");
    }

    #[test]
    fn key_text_rejects() {
        let text = UnlockKey::generate().unwrap().to_string();
        for (bad, expected) in [
            (text.replace("SWMKEY", "SWMTKN"), "must start with"),
            (text[..text.len() - 1].to_owned(), "expected 50"),
            (
                format!("{}Z", &text[..text.len() - 1]),
                "not lowercase base36",
            ),
            (format!("SWMKEY-1-{}", "z".repeat(50)), "256-bit"),
        ] {
            let err = bad.parse::<UnlockKey>().unwrap_err().to_string();
            assert!(
                err.starts_with("invalid unlock key: ") && err.contains(expected),
                "{err}"
            );
        }
    }

    #[test]
    fn seal_open_round_trip_and_random_nonce() {
        let key = UnlockKey::generate().unwrap();
        let secret = b"raft log entry 42";
        let a = seal(&key, secret).unwrap();
        let b = seal(&key, secret).unwrap();
        assert_ne!(a, b, "each seal uses a fresh nonce");
        assert_eq!(a.len(), 12 + secret.len() + 16);
        assert!(!a.windows(secret.len()).any(|w| w == secret));
        assert_eq!(open(&key, &a).unwrap(), secret);
        assert_eq!(open(&key, &seal(&key, b"").unwrap()).unwrap(), b"");
    }

    #[test]
    fn tampering_and_wrong_keys_are_detected() {
        let key = UnlockKey::generate().unwrap();
        let sealed = seal(&key, b"tls key").unwrap();
        for i in [0, 12, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                matches!(open(&key, &bad), Err(CaError::Unseal)),
                "flip at {i}"
            );
        }
        assert!(matches!(
            open(&key, &sealed[..sealed.len() - 1]),
            Err(CaError::Unseal)
        ));
        assert!(matches!(open(&key, &sealed[..5]), Err(CaError::Unseal)));
        let other = UnlockKey::generate().unwrap();
        let err = open(&other, &sealed).unwrap_err();
        assert!(err.to_string().contains("wrong unlock key"), "{err}");
    }
}
