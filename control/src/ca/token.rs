//! Join tokens, in Swarm's form `SWMTKN-1-<CA digest>-<secret>`: the digest
//! pins the root CA for the joining node, the secret authorizes the join and
//! picks the role (one secret for workers, one for managers).

use std::fmt;
use std::str::FromStr;

use super::encoding::{base36_encode, constant_time_eq, is_base36, random_bytes};
use super::CaError;
use crate::objects::Role;

/// What every join token starts with.
pub const JOIN_TOKEN_PREFIX: &str = "SWMTKN-1-";
/// Length of the CA digest part: SHA-256 in base36.
pub const DIGEST_LEN: usize = 50;
/// Length of the secret part: 16 random bytes in base36.
pub const SECRET_LEN: usize = 25;

/// A parsed join token. Its `Debug` hides the secret; `Display` prints the
/// whole token (that is what `join-token` shows).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// [`super::ca_digest`] of the cluster's root CA.
    pub digest: String,
    /// The worker or manager secret.
    pub secret: String,
}

impl JoinToken {
    /// A new random secret: 16 bytes from the system RNG, 25 base36 chars.
    pub fn new_secret() -> Result<String, CaError> {
        Ok(base36_encode(&random_bytes::<16>()?, SECRET_LEN))
    }

    /// Whether this token carries `expected_secret`, compared in constant time.
    pub fn matches(&self, expected_secret: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), expected_secret.as_bytes())
    }

    /// The manager's check of a join request: the token must pin this
    /// cluster's current CA (`ca_digest`) and carry the worker or the manager
    /// secret; the role it grants is returned. Both secrets are always
    /// compared, so timing does not reveal which one was close.
    pub fn check(
        &self,
        ca_digest: &str,
        worker_secret: &str,
        manager_secret: &str,
    ) -> Result<Role, CaError> {
        let digest_ok = constant_time_eq(self.digest.as_bytes(), ca_digest.as_bytes());
        let is_worker = self.matches(worker_secret);
        let is_manager = self.matches(manager_secret);
        match (digest_ok, is_manager, is_worker) {
            (true, true, _) => Ok(Role::Manager),
            (true, false, true) => Ok(Role::Worker),
            _ => Err(CaError::JoinTokenRejected),
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{JOIN_TOKEN_PREFIX}{}-{}", self.digest, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("digest", &self.digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = CaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| CaError::InvalidJoinToken(reason);
        let text = text.trim();
        let Some(rest) = text.strip_prefix("SWMTKN-") else {
            return Err(invalid(format!(
                "it must start with `{JOIN_TOKEN_PREFIX}`; copy it from `shoal swarm join-token`"
            )));
        };
        let parts: Vec<&str> = rest.split('-').collect();
        let [version, digest, secret] = parts.as_slice() else {
            return Err(invalid(format!(
                "expected `{JOIN_TOKEN_PREFIX}<digest>-<secret>`, found {} dash-separated parts",
                parts.len() + 1
            )));
        };
        if *version != "1" {
            return Err(invalid(format!(
                "unsupported version `{version}`: only SWMTKN-1 exists"
            )));
        }
        if digest.len() != DIGEST_LEN || !is_base36(digest) {
            return Err(invalid(format!(
                "the CA digest must be {DIGEST_LEN} lowercase base36 characters, found {} characters",
                digest.len()
            )));
        }
        if secret.len() != SECRET_LEN || !is_base36(secret) {
            return Err(invalid(format!(
                "the secret must be {SECRET_LEN} lowercase base36 characters, found {} characters",
                secret.len()
            )));
        }
        Ok(JoinToken {
            digest: (*digest).to_owned(),
            secret: (*secret).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::RootCa;

    fn token() -> JoinToken {
        let ca = RootCa::generate("c").unwrap();
        JoinToken {
            digest: ca.digest(),
            secret: JoinToken::new_secret().unwrap(),
        }
    }

    #[test]
    fn round_trips_in_swarm_format() {
        let t = token();
        let text = t.to_string();
        assert!(text.starts_with("SWMTKN-1-"));
        assert_eq!(text.len(), 9 + 50 + 1 + 25);
        assert_eq!(text.parse::<JoinToken>().unwrap(), t);
        assert_eq!(format!("  {text}\n").parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn secrets_are_25_base36_and_random() {
        let a = JoinToken::new_secret().unwrap();
        assert_eq!(a.len(), 25);
        assert!(is_base36(&a));
        assert_ne!(a, JoinToken::new_secret().unwrap());
    }

    #[test]
    fn rejects_malformed_tokens_with_clear_errors() {
        let good = token().to_string();
        let (d, s) = (&good[9..59], &good[60..]);
        let cases = [
            (format!("SWMKEY-1-{d}-{s}"), "must start with"),
            (format!("swmtkn-1-{d}-{s}"), "must start with"),
            (format!("SWMTKN-2-{d}-{s}"), "unsupported version"),
            (format!("SWMTKN-1-{}-{s}", &d[1..]), "CA digest must be 50"),
            (format!("SWMTKN-1-{d}0-{s}"), "CA digest must be 50"),
            (format!("SWMTKN-1-{d}-{}", &s[1..]), "secret must be 25"),
            (format!("SWMTKN-1-{d}-{s}x"), "secret must be 25"),
            (
                format!("SWMTKN-1-{}-{s}", d.to_uppercase()),
                "lowercase base36",
            ),
            (format!("SWMTKN-1-{d}-{}!", &s[1..]), "secret must be 25"),
            (format!("SWMTKN-1-{d}"), "dash-separated parts"),
            (format!("SWMTKN-1-{d}-{s}-extra"), "dash-separated parts"),
            (String::new(), "must start with"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<JoinToken>().unwrap_err().to_string();
            assert!(err.starts_with("invalid join token: "), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn check_picks_the_role_and_refuses_rotated_or_foreign_tokens() {
        let ca = RootCa::generate("c").unwrap();
        let worker = JoinToken::new_secret().unwrap();
        let manager = JoinToken::new_secret().unwrap();
        let with = |secret: &str| JoinToken {
            digest: ca.digest(),
            secret: secret.to_owned(),
        };
        assert_eq!(
            with(&worker)
                .check(&ca.digest(), &worker, &manager)
                .unwrap(),
            Role::Worker
        );
        assert_eq!(
            with(&manager)
                .check(&ca.digest(), &worker, &manager)
                .unwrap(),
            Role::Manager
        );
        assert!(with(&worker).matches(&worker));
        assert!(!with(&worker).matches(&manager));
        // Rotated worker secret: the old token no longer joins.
        let rotated = JoinToken::new_secret().unwrap();
        let err = with(&worker)
            .check(&ca.digest(), &rotated, &manager)
            .unwrap_err();
        assert!(err.to_string().contains("rotated"), "{err}");
        // Right secret, another cluster's CA.
        let other = RootCa::generate("c").unwrap();
        assert!(with(&worker)
            .check(&other.digest(), &worker, &manager)
            .is_err());
    }
}
