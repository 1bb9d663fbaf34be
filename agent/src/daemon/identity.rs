//! What a node keeps in its state dir to survive restarts: who it is in the
//! swarm (`node.json`) and its keys (`certs -> certs.<n>`: the TLS material
//! and the Raft data key, replaced as one unit by [`super::key_dir`]). The
//! dir is 0700 and every file 0600; files are replaced atomically (new file,
//! fsync, rename, fsync of the dir) so a crash never leaves half a file.

use shoal_control::error_chain::ErrorChain;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_control::ca::UnlockKey;
use shoal_control::objects::Role;

use super::at_rest::{is_sealed, open_secret, seal_secret, SecretError};
use super::key_dir::KeyDir;
use crate::private_files::{self, private_dir, restrict, DIR_MODE, FILE_MODE};

/// The files of a key generation.
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "node.pem";
const KEY_FILE: &str = "node.key";
const DEK_FILE: &str = "raft-dek";
const KEY_FILES: [&str; 4] = [CA_FILE, CERT_FILE, KEY_FILE, DEK_FILE];

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

    /// The node's keys: certificate, key and data key, as one unit.
    fn keys(&self) -> KeyDir {
        KeyDir::new(&self.root)
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

    /// Creates the state dir 0700, or narrows it and everything the agent
    /// keeps in it to 0700 (dirs) and 0600 (files): a state dir written by
    /// an older version, or loosened by hand, is private again at start.
    pub fn make_private(&self) -> io::Result<()> {
        private_dir(&self.root)?;
        for entry in fs::read_dir(&self.root)?.filter_map(Result::ok) {
            let name = entry.file_name();
            let owned = name.to_str().is_some_and(|n| {
                matches!(
                    n,
                    "node.json" | "networks.json" | "endpoints.json" | "raft" | "tasks"
                ) || n == DEK_FILE
                    || n == "certs"
                    || n.starts_with("certs.")
            });
            if owned {
                restrict_tree(&entry.path(), 2)?;
            }
        }
        Ok(())
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

    /// Reads a file of the current key generation.
    fn read_key_file(&self, name: &str) -> Result<Vec<u8>, SecretError> {
        let keys = self.keys();
        let io_err = |source| SecretError::Io {
            path: keys.path(name).display().to_string(),
            cause: source,
        };
        keys.read(name)
            .map_err(io_err)?
            .ok_or_else(|| io_err(io::ErrorKind::NotFound.into()))
    }

    /// Reads the certificates; a sealed key needs the unlock key.
    pub fn load_certs(&self, kek: Option<&UnlockKey>) -> Result<Certs, SecretError> {
        let keys = self.keys();
        let text = |name: &str| -> Result<String, SecretError> {
            String::from_utf8(self.read_key_file(name)?)
                .map_err(|_| SecretError::Damaged(keys.path(name).display().to_string()))
        };
        let key = open_secret(&keys.path(KEY_FILE), &self.read_key_file(KEY_FILE)?, kek)?;
        Ok(Certs {
            ca_pem: text(CA_FILE)?,
            cert_pem: text(CERT_FILE)?,
            key_pem: String::from_utf8(key)
                .map_err(|_| SecretError::Damaged(keys.path(KEY_FILE).display().to_string()))?,
        })
    }

    /// Writes the certificates, sealing the key with `kek` under autolock;
    /// the data key, if any, is kept as it is. Certificate and key are
    /// replaced together or not at all.
    pub fn save_certs(&self, certs: &Certs, kek: Option<&UnlockKey>) -> io::Result<()> {
        let dek = self.keys().read(DEK_FILE)?;
        let mut files = cert_files(certs, kek)?;
        files.extend(dek.map(|d| (DEK_FILE, d)));
        self.keys().commit(&files)
    }

    /// The Raft data key: read (unsealing it with `kek`), or made on first use.
    pub fn data_key(&self, kek: Option<&UnlockKey>) -> Result<UnlockKey, SecretError> {
        let keys = self.keys();
        let path = keys.path(DEK_FILE);
        let io_err = |source| SecretError::Io {
            path: path.display().to_string(),
            cause: source,
        };
        if let Some(stored) = keys.read(DEK_FILE).map_err(io_err)? {
            let text = open_secret(&path, &stored, kek)?;
            return std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| SecretError::Damaged(path.display().to_string()));
        }
        let key =
            UnlockKey::generate().map_err(|e| io_err(io::Error::other(e.chain().to_string())))?;
        let mut files: Vec<_> = keys
            .read_all(&KEY_FILES)
            .map_err(io_err)?
            .into_iter()
            .filter(|(name, _)| *name != DEK_FILE)
            .collect();
        files.push((
            DEK_FILE,
            seal_secret(key.to_string().as_bytes(), kek).map_err(io_err)?,
        ));
        keys.commit(&files).map_err(io_err)?;
        Ok(key)
    }

    /// Drops the Raft data key (the node no longer is a manager).
    pub fn forget_data_key(&self) -> io::Result<()> {
        let keys = self.keys();
        if keys.read(DEK_FILE)?.is_none() {
            return Ok(());
        }
        let files: Vec<_> = keys
            .read_all(&KEY_FILES)?
            .into_iter()
            .filter(|(name, _)| *name != DEK_FILE)
            .collect();
        keys.commit(&files)
    }

    /// Re-seals the data key and the node key with `kek` (or stores them
    /// plain when `None`), after autolock was turned on, off or rotated:
    /// both change in one step, so they are never sealed under two keys.
    pub fn reseal(
        &self,
        certs: &Certs,
        dek: Option<&UnlockKey>,
        kek: Option<&UnlockKey>,
    ) -> io::Result<()> {
        let mut files = cert_files(certs, kek)?;
        if let Some(dek) = dek {
            files.push((DEK_FILE, seal_secret(dek.to_string().as_bytes(), kek)?));
        }
        self.keys().commit(&files)
    }

    /// Whether this node's keys are sealed: it starts locked.
    pub fn is_locked(&self) -> bool {
        self.keys()
            .read(KEY_FILE)
            .ok()
            .flatten()
            .is_some_and(|k| is_sealed(&k))
    }

    /// Forgets the swarm: identity, certificates and Raft data.
    pub fn wipe(&self) -> io::Result<()> {
        for path in [
            self.identity_file(),
            self.networks_file(),
            self.endpoints_file(),
        ] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.keys().wipe()?;
        for dir in [self.raft_dir(), self.tasks_dir()] {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The certificate files of a generation, the key sealed with `kek`.
fn cert_files(certs: &Certs, kek: Option<&UnlockKey>) -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        (CA_FILE, certs.ca_pem.clone().into_bytes()),
        (CERT_FILE, certs.cert_pem.clone().into_bytes()),
        (KEY_FILE, seal_secret(certs.key_pem.as_bytes(), kek)?),
    ])
}

/// Narrows `path` to 0700 (dir) or 0600 (file), and the entries of a dir,
/// `depth` levels down.
fn restrict_tree(path: &Path, depth: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        restrict(path, DIR_MODE)?;
        if depth > 0 {
            for entry in fs::read_dir(path)?.filter_map(Result::ok) {
                restrict_tree(&entry.path(), depth - 1)?;
            }
        }
        Ok(())
    } else if meta.is_file() {
        restrict(path, FILE_MODE)
    } else {
        Ok(())
    }
}

/// Replaces `path` with `bytes` as a private file, creating its directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    private_files::replace(path, bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn certs(tag: &str) -> Certs {
        Certs {
            ca_pem: format!("ca {tag}"),
            cert_pem: format!("cert {tag}"),
            key_pem: format!("key {tag}"),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keys_are_sealed_and_replaced_together() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::new(root.path().join("state"));
        state.make_private().unwrap();
        state.save_certs(&certs("1"), None).unwrap();
        let dek = state.data_key(None).unwrap();
        assert_eq!(state.data_key(None).unwrap().to_string(), dek.to_string());
        assert!(!state.is_locked());

        let kek = UnlockKey::generate().unwrap();
        state.reseal(&certs("1"), Some(&dek), Some(&kek)).unwrap();
        assert!(state.is_locked());
        assert!(matches!(state.load_certs(None), Err(SecretError::Locked)));
        assert!(matches!(state.data_key(None), Err(SecretError::Locked)));
        assert_eq!(state.load_certs(Some(&kek)).unwrap().key_pem, "key 1");
        assert_eq!(
            state.data_key(Some(&kek)).unwrap().to_string(),
            dek.to_string()
        );
        // A renewal keeps the data key and the sealing.
        state.save_certs(&certs("2"), Some(&kek)).unwrap();
        assert_eq!(state.load_certs(Some(&kek)).unwrap().cert_pem, "cert 2");
        assert_eq!(
            state.data_key(Some(&kek)).unwrap().to_string(),
            dek.to_string()
        );
        state.forget_data_key().unwrap();
        assert!(state.load_certs(Some(&kek)).is_ok());
        assert_ne!(
            state.data_key(Some(&kek)).unwrap().to_string(),
            dek.to_string()
        );
    }

    #[test]
    fn a_loose_state_dir_is_made_private_at_start() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let state = StateDir::new(&dir);
        state.save_certs(&certs("1"), None).unwrap();
        fs::create_dir_all(dir.join("raft")).unwrap();
        fs::create_dir_all(dir.join("tasks/t1")).unwrap();
        for (path, m) in [
            (dir.clone(), 0o755),
            (dir.join("raft"), 0o755),
            (dir.join("tasks/t1"), 0o777),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(m)).unwrap();
        }
        for file in ["node.json", "raft/raft.redb", "tasks/t1/stdout.log"] {
            fs::write(dir.join(file), "x").unwrap();
            fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let key = state.keys().path(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        state.make_private().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("raft")), 0o700);
        assert_eq!(mode(&dir.join("tasks/t1")), 0o700);
        for file in ["node.json", "raft/raft.redb", "tasks/t1/stdout.log"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(mode(&key), 0o600);
    }
}
