//! A node's keys on disk as one unit: the CA certificate, the node's
//! certificate and key, and (on managers) the Raft data key live together
//! in a generation directory `certs.<n>`, and the link `certs -> certs.<n>`
//! names the current one. A change writes a whole new generation, makes it
//! durable, then switches the link with one rename: a crash at any point
//! leaves the old generation or the new one, never a certificate beside
//! another certificate's key, nor files sealed under two unlock keys.
//!
//! ```text
//! certs.<n+1>.partial/   files written (0600, create_new) and fsynced
//! certs.<n+1>/           the directory renamed once complete; root fsynced
//! .certs.link            a new link to it
//! certs                  the link renamed over the old one; root fsynced
//!                        then older generations are removed
//! ```
//! The layout before generations (`certs/` a directory, `raft-dek` beside
//! it) is still read, and replaced by the first write.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::private_files::{crash_point, private_dir, sync_dir, write_new};

/// The link to the current generation.
const LINK: &str = "certs";
/// Where a new link is made before it is renamed over [`LINK`].
const NEW_LINK: &str = ".certs.link";
/// The legacy data key file, beside a legacy `certs/` directory.
const LEGACY_DEK: &str = "raft-dek";
const PARTIAL: &str = ".partial";

/// The write steps, in order, as the crash hook names them.
pub const WRITE_STEPS: [&str; 5] = [
    "keys:partial-written",
    "keys:generation-complete",
    "keys:link-made",
    "keys:switched",
    "keys:cleaned",
];

/// The files of one generation, by name, as stored (sealed or plain).
pub type Files = Vec<(&'static str, Vec<u8>)>;

/// Where the current files are.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Current {
    /// `certs -> certs.<n>`, or the newest complete `certs.<n>` when a crash
    /// came between retiring a legacy directory and making the link.
    Generation(u64),
    /// `certs/` a directory, `raft-dek` beside it.
    Legacy,
    Nothing,
}

/// The generation directories under a state dir.
#[derive(Clone, Debug)]
pub struct KeyDir {
    root: PathBuf,
}

impl KeyDir {
    pub fn new(root: &Path) -> KeyDir {
        KeyDir {
            root: root.to_path_buf(),
        }
    }

    /// The path of file `name` of the current generation (which may not
    /// exist).
    pub fn path(&self, name: &str) -> PathBuf {
        match self.current() {
            Ok(Current::Legacy) if name == LEGACY_DEK => self.root.join(LEGACY_DEK),
            Ok(Current::Generation(n)) => self.generation(n).join(name),
            _ => self.root.join(LINK).join(name),
        }
    }

    /// Reads file `name` of the current generation; `None` if it has none.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every file of the current generation.
    pub fn read_all(&self, names: &[&'static str]) -> io::Result<Files> {
        let mut files = Vec::new();
        for name in names {
            if let Some(bytes) = self.read(name)? {
                files.push((*name, bytes));
            }
        }
        Ok(files)
    }

    /// Makes `files` the current generation, as the module docs describe.
    pub fn commit(&self, files: &[(&'static str, Vec<u8>)]) -> io::Result<()> {
        private_dir(&self.root)?;
        let current = self.current()?;
        let next = self.generations()?.into_iter().max().unwrap_or(0) + 1;
        let partial = self.root.join(format!("{LINK}.{next}{PARTIAL}"));
        if partial.exists() {
            fs::remove_dir_all(&partial)?;
        }
        private_dir(&partial)?;
        for (name, bytes) in files {
            write_new(&partial.join(name), bytes)?;
        }
        crash_point(WRITE_STEPS[0]);
        sync_dir(&partial)?;
        fs::rename(&partial, self.generation(next))?;
        sync_dir(&self.root)?;
        crash_point(WRITE_STEPS[1]);

        let new_link = self.root.join(NEW_LINK);
        match fs::remove_file(&new_link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(format!("{LINK}.{next}"), &new_link)?;
        crash_point(WRITE_STEPS[2]);
        if current == Current::Legacy {
            // A link cannot replace a directory: retire it first. A crash
            // now leaves no link, and the newest generation is read.
            fs::rename(
                self.root.join(LINK),
                self.root.join(format!("{LINK}.legacy")),
            )?;
        }
        fs::rename(&new_link, self.root.join(LINK))?;
        sync_dir(&self.root)?;
        crash_point(WRITE_STEPS[3]);
        self.remove_stale(next)?;
        crash_point(WRITE_STEPS[4]);
        Ok(())
    }

    /// Removes every generation, the link and the legacy files.
    pub fn wipe(&self) -> io::Result<()> {
        for name in [LINK, NEW_LINK, LEGACY_DEK] {
            let path = self.root.join(name);
            let removed = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.remove_stale(u64::MAX)
    }

    fn generation(&self, n: u64) -> PathBuf {
        self.root.join(format!("{LINK}.{n}"))
    }

    /// Which generation is current.
    fn current(&self) -> io::Result<Current> {
        let link = self.root.join(LINK);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&link)?;
                let n = target
                    .to_str()
                    .and_then(|t| t.strip_prefix(&format!("{LINK}.")))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{} points at {}, not at a key generation",
                                link.display(),
                                target.display()
                            ),
                        )
                    })?;
                Ok(Current::Generation(n))
            }
            Ok(meta) if meta.is_dir() => Ok(Current::Legacy),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is neither a link nor a directory", link.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(self
                .generations()?
                .into_iter()
                .max()
                .map_or(Current::Nothing, Current::Generation)),
            Err(e) => Err(e),
        }
    }

    /// The complete generations on disk.
    fn generations(&self) -> io::Result<Vec<u64>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| name.strip_prefix(&format!("{LINK}."))?.parse().ok())
            .collect())
    }

    /// Removes generations other than `keep`, partial ones, and what the
    /// legacy layout left.
    fn remove_stale(&self, keep: u64) -> io::Result<()> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(&format!("{LINK}.")) else {
                continue;
            };
            if rest.parse::<u64>().ok() == Some(keep) {
                continue;
            }
            fs::remove_dir_all(entry.path())?;
        }
        if keep != u64::MAX && self.root.join(LINK).is_symlink() {
            match fs::remove_file(self.root.join(LEGACY_DEK)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;
    use crate::private_files::CRASH_AT_ENV;

    const NAMES: [&str; 3] = ["node.pem", "node.key", "raft-dek"];

    fn files(tag: &str) -> Files {
        NAMES
            .iter()
            .map(|n| (*n, format!("{n} of {tag}").into_bytes()))
            .collect()
    }

    #[test]
    fn a_commit_replaces_every_file_at_once() {
        let root = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(root.path());
        assert_eq!(keys.read("node.pem").unwrap(), None);
        keys.commit(&files("one")).unwrap();
        assert_eq!(keys.read_all(&NAMES).unwrap(), files("one"));
        keys.commit(&files("two")[..2]).unwrap();
        assert_eq!(keys.read_all(&NAMES).unwrap(), files("two")[..2].to_vec());
        // One generation left, all private.
        let mut left: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["certs", "certs.2"]);
        let dir = root.path().join("certs.2");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in fs::read_dir(&dir).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        keys.wipe().unwrap();
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_legacy_layout_is_read_and_then_replaced() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("certs")).unwrap();
        fs::write(root.path().join("certs/node.pem"), "old cert").unwrap();
        fs::write(root.path().join("raft-dek"), "old dek").unwrap();
        let keys = KeyDir::new(root.path());
        assert_eq!(keys.read("node.pem").unwrap().unwrap(), b"old cert");
        assert_eq!(keys.read("raft-dek").unwrap().unwrap(), b"old dek");
        keys.commit(&files("new")).unwrap();
        assert_eq!(keys.read_all(&NAMES).unwrap(), files("new"));
        assert!(!root.path().join("raft-dek").exists());
        assert!(!root.path().join("certs.legacy").exists());
    }

    /// Child half of the crash test: commits "new" over "old" in the dir
    /// named by the environment, with the crash hook armed by the parent.
    #[test]
    #[ignore = "run by crash_at_any_step_leaves_one_whole_generation"]
    fn commit_in_a_child() {
        let Some(dir) = std::env::var_os("SHOAL_KEY_DIR_TEST") else {
            return;
        };
        KeyDir::new(Path::new(&dir)).commit(&files("new")).unwrap();
    }

    #[test]
    fn crash_at_any_step_leaves_one_whole_generation() {
        let exe = std::env::current_exe().unwrap();
        for (i, step) in WRITE_STEPS.iter().enumerate() {
            for legacy in [false, true] {
                let root = tempfile::tempdir().unwrap();
                let keys = KeyDir::new(root.path());
                if legacy {
                    fs::create_dir(root.path().join("certs")).unwrap();
                    for (name, bytes) in files("old") {
                        let path = match name {
                            "raft-dek" => root.path().join(name),
                            _ => root.path().join("certs").join(name),
                        };
                        fs::write(path, bytes).unwrap();
                    }
                } else {
                    keys.commit(&files("old")).unwrap();
                }
                let status = Command::new(&exe)
                    .args([
                        "--exact",
                        "daemon::key_dir::tests::commit_in_a_child",
                        "--ignored",
                        "--nocapture",
                    ])
                    .env("SHOAL_KEY_DIR_TEST", root.path())
                    .env(CRASH_AT_ENV, step)
                    .output()
                    .unwrap();
                assert!(
                    !status.status.success(),
                    "the child did not crash at {step}"
                );
                // Before the switch the old generation is whole; from it on,
                // the new one.
                let expected = if i < 3 { "old" } else { "new" };
                assert_eq!(
                    keys.read_all(&NAMES).unwrap(),
                    files(expected),
                    "after a crash at {step} (legacy: {legacy})"
                );
                // The next write cleans up and succeeds.
                keys.commit(&files("after")).unwrap();
                assert_eq!(keys.read_all(&NAMES).unwrap(), files("after"));
            }
        }
    }
}
