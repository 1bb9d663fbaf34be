//! Named local volumes (Docker's `local` driver): a directory per volume
//! under the agent's state, `<root>/<name>/_data`, created the first time a
//! task mounts it and kept until removed; listed for `volume ls`.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The node's volumes.
#[derive(Clone, Debug)]
pub struct Volumes {
    root: PathBuf,
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so a name is one safe path
/// component.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes.len() <= 255
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Volumes {
    pub fn new(root: PathBuf) -> Volumes {
        Volumes { root }
    }

    /// The volume's data directory, created (0755, as Docker's) if
    /// missing; true when it was just created.
    pub fn ensure(&self, name: &str) -> io::Result<(PathBuf, bool)> {
        if !valid_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a valid volume name: use [a-zA-Z0-9][a-zA-Z0-9_.-]+"),
            ));
        }
        let data = self.root.join(name).join("_data");
        if data.is_dir() {
            return Ok((data, false));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)?;
        Ok((data, true))
    }

    /// Every volume's name, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("_data").is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Removes a volume and its data.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        if !valid_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no such volume: {name}"),
            ));
        }
        fs::remove_dir_all(self.root.join(name))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_component() {
        for good in ["data", "db-1", "a.b_c", "0x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a", "../x", "a/b", ".hidden", "-x", "with space"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn created_once_listed_and_removed() {
        let dir = tempfile::TempDir::new().unwrap();
        let volumes = Volumes::new(dir.path().join("volumes"));
        let (data, created) = volumes.ensure("db").unwrap();
        assert!(created && data.is_dir());
        fs::write(data.join("f"), "kept").unwrap();
        let (again, created) = volumes.ensure("db").unwrap();
        assert!(!created);
        assert_eq!(fs::read_to_string(again.join("f")).unwrap(), "kept");
        volumes.ensure("cache").unwrap();
        assert_eq!(volumes.list(), vec!["cache", "db"]);
        volumes.remove("db").unwrap();
        assert_eq!(volumes.list(), vec!["cache"]);
        assert!(volumes.ensure("../escape").is_err());
    }
}
