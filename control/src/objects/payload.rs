//! Secrets and configs: named blobs of at most 500 KB that services mount
//! as files in their tasks (store kinds `secret` and `config`, keyed by
//! id). They are the same object with two rules apart: a secret's data is
//! never shown back (only the nodes running a task that uses it receive
//! it), a config's is. The store seals every value with the Raft data key,
//! so a secret is at rest only in the managers' encrypted store.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store::{kind, Object};

/// Docker's limit on a secret's or config's data.
pub const MAX_PAYLOAD_BYTES: usize = 500 * 1024;
/// Docker's limit on a secret's or config's name.
const MAX_NAME_LEN: usize = 64;

/// What sets secrets and configs apart.
pub trait PayloadKind: Clone + fmt::Debug + PartialEq + Eq + Send + Sync + 'static {
    /// The store kind.
    const KIND: &'static str;
    /// What users call it in messages.
    const WHAT: &'static str;
    /// Whether `inspect` shows the data (configs) or never does (secrets).
    const SHOWS_DATA: bool;
}

/// The kind of [`Secret`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecretKind;

/// The kind of [`Config`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigKind;

impl PayloadKind for SecretKind {
    const KIND: &'static str = kind::SECRET;
    const WHAT: &'static str = "secret";
    const SHOWS_DATA: bool = false;
}

impl PayloadKind for ConfigKind {
    const KIND: &'static str = kind::CONFIG;
    const WHAT: &'static str = "config";
    const SHOWS_DATA: bool = true;
}

/// Bytes that travel as base64 in JSON and never print in logs or `Debug`
/// (a secret's data must not leak through a trace line).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PayloadData(pub Vec<u8>);

impl fmt::Debug for PayloadData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl PayloadData {
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<PayloadData, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(PayloadData)
    }
}

impl Serialize for PayloadData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.base64())
    }
}

impl<'de> Deserialize<'de> for PayloadData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PayloadData::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret or config as the managers store it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Payload<K: PayloadKind> {
    /// 25 lowercase base36 characters.
    pub id: String,
    /// Unique among objects of its kind.
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub data: PayloadData,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(skip)]
    pub kind: PhantomData<K>,
}

/// A secret (`shoal secret create`).
pub type Secret = Payload<SecretKind>;
/// A config (`shoal config create`).
pub type Config = Payload<ConfigKind>;

impl<K: PayloadKind> Object for Payload<K> {
    const KIND: &'static str = K::KIND;
    fn id(&self) -> &str {
        &self.id
    }
}

/// Why a secret or config was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("invalid {what} name `{name}`: use 1-64 characters of [a-zA-Z0-9-_.], starting and ending with a letter or digit")]
    BadName { what: &'static str, name: String },
    #[error("{what} {name}: {bytes} bytes of data is over the limit of {MAX_PAYLOAD_BYTES} bytes (500 KB)")]
    TooLarge {
        what: &'static str,
        name: String,
        bytes: usize,
    },
    #[error("{what} {name}: the data is empty")]
    Empty { what: &'static str, name: String },
    #[error("{what} {0} already exists", what = .1)]
    NameTaken(String, &'static str),
    #[error("only updates to Labels are allowed: a {what}'s data cannot change; create a new {what} and point the services at it")]
    DataChange { what: &'static str },
    #[error("{what} target {target} is used twice in the service: give each a different target")]
    DuplicateTarget { what: &'static str, target: String },
    #[error("invalid {what} target `{target}`: use an absolute path or a file name, without `.` or `..` components")]
    BadTarget { what: &'static str, target: String },
    #[error("invalid {what} file mode {mode:o}: use permission bits only, such as 0400")]
    BadMode { what: &'static str, mode: u32 },
    #[error("{what} '{name}' is in use by the following service{plural}: {services}", plural = if .services.contains(',') { "s" } else { "" })]
    InUse {
        what: &'static str,
        name: String,
        services: String,
    },
}

impl<K: PayloadKind> Payload<K> {
    /// A new object, checked by Docker's rules.
    pub fn new(
        id: String,
        name: String,
        labels: BTreeMap<String, String>,
        data: PayloadData,
        now: u64,
    ) -> Result<Self, PayloadError> {
        check_name::<K>(&name)?;
        if data.0.is_empty() {
            return Err(PayloadError::Empty {
                what: K::WHAT,
                name,
            });
        }
        if data.0.len() > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge {
                what: K::WHAT,
                bytes: data.0.len(),
                name,
            });
        }
        Ok(Payload {
            id,
            name,
            labels,
            data,
            created_at: now,
            updated_at: now,
            kind: PhantomData,
        })
    }
}

/// Docker's name rule: `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`, at
/// most 64 characters. It also keeps the default target one path
/// component.
pub fn check_name<K: PayloadKind>(name: &str) -> Result<(), PayloadError> {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(inner);
    if ok {
        Ok(())
    } else {
        Err(PayloadError::BadName {
            what: K::WHAT,
            name: name.to_string(),
        })
    }
}

/// A task's use of a secret or config (`--secret source=NAME,target=...`):
/// which object, and the file it becomes in the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadReference {
    /// The object's id; users may give a name or id, the manager stores
    /// the id.
    #[serde(default)]
    pub id: String,
    /// The object's name.
    pub name: String,
    /// Where the file appears: an absolute path, or a name relative to
    /// `/run/secrets/` (secrets) or `/` (configs). Empty: the name.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Docker's default: 0444.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o444
}

impl PayloadReference {
    /// A reference to `name` with Docker's defaults.
    pub fn named(name: &str) -> Self {
        PayloadReference {
            id: String::new(),
            name: name.to_string(),
            target: String::new(),
            uid: 0,
            gid: 0,
            mode: default_mode(),
        }
    }

    /// The absolute path of the file in the task: a relative target (or
    /// none) goes under `base` (`/run/secrets` or `/`).
    pub fn path_in_task(&self, base: &str) -> String {
        let target = if self.target.is_empty() {
            &self.name
        } else {
            &self.target
        };
        if target.starts_with('/') {
            target.clone()
        } else {
            format!("{}/{target}", base.trim_end_matches('/'))
        }
    }
}

/// Where secrets go in a task by default, as in Docker.
pub const SECRETS_BASE: &str = "/run/secrets";
/// Where configs go in a task by default, as in Docker.
pub const CONFIGS_BASE: &str = "/";

/// The data a node receives for one task's use of a secret or config, in
/// its assignment (over the mutual-TLS heartbeat). `Debug` never shows the
/// data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadFile {
    /// The file's absolute path in the task.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub data: PayloadData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["a", "db_password", "tls.key", "x-1"] {
            assert!(check_name::<SecretKind>(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name::<SecretKind>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_is_bounded_and_never_printed() {
        let secret = Secret::new(
            "i".into(),
            "pw".into(),
            BTreeMap::new(),
            PayloadData(b"hunter2".to_vec()),
            1,
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        let json = serde_json::to_string(&secret).unwrap();
        assert!(json.contains("\"data\":\"aHVudGVyMg==\""), "{json}");
        assert_eq!(serde_json::from_str::<Secret>(&json).unwrap(), secret);
        let big = PayloadData(vec![b'x'; MAX_PAYLOAD_BYTES + 1]);
        let err = Secret::new("i".into(), "pw".into(), BTreeMap::new(), big, 1).unwrap_err();
        assert!(err.to_string().contains("over the limit of 512000 bytes"));
        let at_limit = PayloadData(vec![b'x'; MAX_PAYLOAD_BYTES]);
        assert!(Config::new("i".into(), "c".into(), BTreeMap::new(), at_limit, 1).is_ok());
    }

    #[test]
    fn targets_default_under_the_kinds_base() {
        let mut r = PayloadReference::named("pw");
        assert_eq!(r.path_in_task(SECRETS_BASE), "/run/secrets/pw");
        assert_eq!(r.path_in_task(CONFIGS_BASE), "/pw");
        r.target = "app/pw.txt".into();
        assert_eq!(r.path_in_task(SECRETS_BASE), "/run/secrets/app/pw.txt");
        r.target = "/etc/app.conf".into();
        assert_eq!(r.path_in_task(SECRETS_BASE), "/etc/app.conf");
    }

    #[test]
    fn in_use_names_the_services_like_docker() {
        let e = PayloadError::InUse {
            what: "secret",
            name: "pw".into(),
            services: "web".into(),
        };
        assert_eq!(
            e.to_string(),
            "secret 'pw' is in use by the following service: web"
        );
    }
}
