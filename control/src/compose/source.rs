//! The edge where compose loading touches files: the compose files named
//! with `-c`, and the `env_file:`s they name. Everything else in this part
//! reads strings; tests use [`MemoryFiles`].

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::error::ComposeError;

/// Reads the files a compose project names.
pub trait FileReader {
    /// The text of `path`, or `None` when it does not exist.
    fn read(&self, path: &Path) -> Result<Option<String>, ComposeError>;
}

/// The real file system. Files are read whole; a compose or env file over
/// `MAX_FILE_BYTES` is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFiles;

/// Larger than any compose or env file a person writes.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

impl FileReader for DiskFiles {
    fn read(&self, path: &Path) -> Result<Option<String>, ComposeError> {
        let error = |source| ComposeError::Read {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error(e)),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(error(std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!("larger than {MAX_FILE_BYTES} bytes"),
                )))
            }
            Ok(_) => {}
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e)),
        }
    }
}

/// Files held in memory, for tests and for callers that already read them.
#[derive(Clone, Debug, Default)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, String>,
}

impl MemoryFiles {
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> MemoryFiles {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl FileReader for MemoryFiles {
    fn read(&self, path: &Path) -> Result<Option<String>, ComposeError> {
        Ok(self.files.get(path).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_files_read_and_tell_missing_from_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.yml");
        std::fs::write(&path, "services: {}\n").unwrap();
        assert_eq!(
            DiskFiles.read(&path).unwrap().as_deref(),
            Some("services: {}\n")
        );
        assert_eq!(
            DiskFiles.read(&dir.path().join("absent.yml")).unwrap(),
            None
        );
        let err = DiskFiles.read(dir.path()).unwrap_err();
        assert!(matches!(err, ComposeError::Read { .. }), "{err}");
    }
}
