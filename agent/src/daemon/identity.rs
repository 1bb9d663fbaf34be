//! What a node keeps in its state dir to survive restarts: who it is in the
//! swarm (`node.json`) and its TLS material (`certs/`). Files are written
//! atomically (temp file + rename) so a crash never leaves half a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_control::ca::UnlockKey;
use shoal_control::objects::Role;

use super::at_rest::{is_sealed, read_secret, write_secret, SecretError};

/// Membership of this node, as last known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    pub hostname: String,
    /// Advertise address (IP).
    pub addr: String,
    /// Port of the manager API when this node is a manager.
    pub listen_port: u16,
    pub raft_id: Option<u64>,
    /// `ip:port` of the managers, the leader first when known.
    pub managers: Vec<String>,
    /// Whether the key files are sealed with the unlock key.
    #[serde(default)]
    pub autolock: bool,
}

impl NodeIdentity {
    /// This node's manager API address.
    pub fn api_addr(&self) -> String {
        format!("{}:{}", self.addr, self.listen_port)
    }
}

/// TLS material: the cluster's root and this node's certificate and key.
#[derive(Clone, Debug)]
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Layout of the state dir.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// The Raft store's data key (sealed with the unlock key under autolock).
    pub fn dek_file(&self) -> PathBuf {
        self.root.join("raft-dek")
    }

    pub fn key_file(&self) -> PathBuf {
        self.certs_dir().join("node.key")
    }

    fn identity_file(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// The swarm's networks as last handed out by the managers.
    pub fn networks_file(&self) -> PathBuf {
        self.root.join("networks.json")
    }

    /// The endpoints this node owns and re-publishes after a restart.
    pub fn endpoints_file(&self) -> PathBuf {
        self.root.join("endpoints.json")
    }

    /// The state directory itself (the container runtime and the image
    /// store keep theirs under it).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The task runtime's state: each task's record and output.
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    fn certs_dir(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// The identity, or `None` when this node is in no swarm.
    pub fn load_identity(&self) -> io::Result<Option<NodeIdentity>> {
        match fs::read(self.identity_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.identity_file().display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save_identity(&self, id: &NodeIdentity) -> io::Result<()> {
        write_atomic(&self.identity_file(), &serde_json::to_vec_pretty(id)?)
    }

    /// Reads the certificates; a sealed key needs the unlock key.
    pub fn load_certs(&self, kek: Option<&UnlockKey>) -> Result<Certs, SecretError> {
        let dir = self.certs_dir();
        let read = |name: &str| {
            fs::read_to_string(dir.join(name)).map_err(|source| SecretError::Io {
                path: dir.join(name).display().to_string(),
                source,
            })
        };
        let key = read_secret(&self.key_file(), kek)?;
        Ok(Certs {
            ca_pem: read("ca.pem")?,
            cert_pem: read("node.pem")?,
            key_pem: String::from_utf8(key)
                .map_err(|_| SecretError::Damaged(self.key_file().display().to_string()))?,
        })
    }

    /// Writes the certificates, sealing the key with `kek` under autolock.
    pub fn save_certs(&self, certs: &Certs, kek: Option<&UnlockKey>) -> io::Result<()> {
        let dir = self.certs_dir();
        fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("ca.pem"), certs.ca_pem.as_bytes())?;
        write_atomic(&dir.join("node.pem"), certs.cert_pem.as_bytes())?;
        write_secret(&self.key_file(), certs.key_pem.as_bytes(), kek)
    }

    /// The Raft data key: read (unsealing it with `kek`), or made on first use.
    pub fn data_key(&self, kek: Option<&UnlockKey>) -> Result<UnlockKey, SecretError> {
        let path = self.dek_file();
        if path.exists() {
            let text = read_secret(&path, kek)?;
            return std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| SecretError::Damaged(path.display().to_string()));
        }
        let key = UnlockKey::generate().map_err(|e| SecretError::Io {
            path: path.display().to_string(),
            source: io::Error::other(e.to_string()),
        })?;
        fs::create_dir_all(&self.root).map_err(|source| SecretError::Io {
            path: self.root.display().to_string(),
            source,
        })?;
        write_secret(&path, key.to_string().as_bytes(), kek).map_err(|source| SecretError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(key)
    }

    /// Re-seals the data key and the node key with `kek` (or stores them
    /// plain when `None`), after autolock was turned on, off or rotated.
    pub fn reseal(
        &self,
        certs: &Certs,
        dek: Option<&UnlockKey>,
        kek: Option<&UnlockKey>,
    ) -> io::Result<()> {
        if let Some(dek) = dek {
            write_secret(&self.dek_file(), dek.to_string().as_bytes(), kek)?;
        }
        write_secret(&self.key_file(), certs.key_pem.as_bytes(), kek)
    }

    /// Whether this node's keys are sealed: it starts locked.
    pub fn is_locked(&self) -> bool {
        is_sealed(&self.key_file())
    }

    /// Forgets the swarm: identity, certificates and Raft data.
    pub fn wipe(&self) -> io::Result<()> {
        for path in [
            self.identity_file(),
            self.dek_file(),
            self.networks_file(),
            self.endpoints_file(),
        ] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for dir in [self.certs_dir(), self.raft_dir(), self.tasks_dir()] {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)
}
