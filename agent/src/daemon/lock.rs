//! One agent per state dir and per run dir: each is locked (`flock` on a
//! `shoal.lock` file holding the agent's PID) for the agent's lifetime, as
//! dockerd refuses a second daemon with its pid file. A second agent would
//! otherwise take over the first one's socket and state while the first
//! still runs. The kernel drops the lock when the process ends, however it
//! ends, so a crashed agent never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside a locked dir.
pub const LOCK_FILE: &str = "shoal.lock";

/// Why a dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another shoal agent{pid} already uses {dir}; stop it first, or give this one its own --state-dir and --run-dir")]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

/// A dir locked for this process; unlocked when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: Flock<File>,
}

impl DirLock {
    /// Locks `dir` (which must exist), or says which agent holds it.
    pub fn take(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            cause: source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let pid = if holder.is_empty() || holder.len() > 20 {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_dir_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::take(dir.path()).expect("first lock");
        // flock locks belong to the open file, so a second open in this
        // process conflicts like another process would.
        let err = DirLock::take(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--state-dir"), "{text}");
        drop(first);
        DirLock::take(dir.path()).expect("free again");
    }
}
