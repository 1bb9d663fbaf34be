//! What a node keeps in its state dir to survive restarts: who it is in the
//! swarm (`node.json`) and its TLS material (`certs/`). Files are written
//! atomically (temp file + rename) so a crash never leaves half a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_control::objects::Role;

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

    fn identity_file(&self) -> PathBuf {
        self.root.join("node.json")
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

    /// Reads the certificates; the key is returned as stored (sealed when
    /// autolock is on).
    pub fn load_certs(&self) -> io::Result<(String, String, Vec<u8>)> {
        let dir = self.certs_dir();
        Ok((
            fs::read_to_string(dir.join("ca.pem"))?,
            fs::read_to_string(dir.join("node.pem"))?,
            fs::read(dir.join("node.key"))?,
        ))
    }

    pub fn save_certs(&self, ca_pem: &str, cert_pem: &str, key_stored: &[u8]) -> io::Result<()> {
        let dir = self.certs_dir();
        fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("ca.pem"), ca_pem.as_bytes())?;
        write_atomic(&dir.join("node.pem"), cert_pem.as_bytes())?;
        write_atomic(&dir.join("node.key"), key_stored)
    }

    /// Forgets the swarm: identity, certificates and Raft data.
    pub fn wipe(&self) -> io::Result<()> {
        for path in [self.identity_file()] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for dir in [self.certs_dir(), self.raft_dir()] {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)
}
