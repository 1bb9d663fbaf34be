//! Named network namespaces that the agent owns, kept as nsfs bind mounts in a
//! directory of its run dir (not `/run/netns`, so several agents on one machine
//! never see each other's), and a way to run code inside one.
//!
//! Entering a namespace happens on a dedicated thread: `setns` changes only the
//! calling thread, and a tokio worker must never be moved.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

/// Errors from creating, entering or removing a namespace; the OS error is
/// the `source`.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot create namespace dir {path}")]
    Dir {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("cannot create network namespace {path}")]
    Create {
        path: PathBuf,
        #[source]
        cause: nix::Error,
    },
    #[error("cannot enter network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("cannot remove network namespace {path}")]
    Remove {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("namespace worker thread panicked")]
    ThreadPanicked,
}

/// A directory of nsfs bind mounts, one file per namespace.
#[derive(Clone, Debug)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl NetnsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        NetnsDir { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// True when `name` is a live namespace (an nsfs mount), not a stale file.
    pub fn exists(&self, name: &str) -> bool {
        is_nsfs(&self.path(name))
    }

    /// Names of the live namespaces in the directory; a missing directory is empty.
    pub fn list(&self) -> Result<Vec<String>, NetnsError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NetnsError::Dir {
                    path: self.dir.clone(),
                    cause: source,
                })
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| self.exists(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates namespace `name`; an existing live one is kept (adopted).
    pub fn create(&self, name: &str) -> Result<PathBuf, NetnsError> {
        let path = self.path(name);
        if is_nsfs(&path) {
            return Ok(path);
        }
        fs::create_dir_all(&self.dir).map_err(|source| NetnsError::Dir {
            path: self.dir.clone(),
            cause: source,
        })?;
        // A stale mount point (an agent stopped between unmounting and
        // unlinking it) is unlinked first: that detaches the copies tasks'
        // mount namespaces may still hold, which would pin the old namespace.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NetnsError::Dir { path, cause: e })
            }
            _ => {}
        }
        File::create(&path).map_err(|source| NetnsError::Dir {
            path: path.clone(),
            cause: source,
        })?;
        let target = path.clone();
        let created = std::thread::scope(|s| {
            s.spawn(move || -> Result<(), nix::Error> {
                unshare(CloneFlags::CLONE_NEWNET)?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            })
            .join()
        });
        match created {
            Ok(Ok(())) => Ok(path),
            Ok(Err(source)) => {
                let _ = fs::remove_file(&path);
                Err(NetnsError::Create {
                    path,
                    cause: source,
                })
            }
            Err(_) => Err(NetnsError::ThreadPanicked),
        }
    }

    /// Removes namespace `name`. Its interfaces die with it once no process
    /// holds it. Removing a missing namespace is not an error. Unlinking the
    /// mount point also detaches the copies of the mount that tasks' mount
    /// namespaces took (Linux 3.18 on), so no task pins the namespace.
    pub fn remove(&self, name: &str) -> Result<(), NetnsError> {
        let path = self.path(name);
        if is_nsfs(&path) {
            umount2(&path, MntFlags::MNT_DETACH).map_err(|e| NetnsError::Remove {
                path: path.clone(),
                cause: e.into(),
            })?;
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetnsError::Remove {
                path,
                cause: source,
            }),
        }
    }
}

fn is_nsfs(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Runs `f` on a fresh thread that has entered the network namespace at `ns`
/// (or stays in the caller's namespace when `ns` is `None`).
pub fn run_in<T, F>(ns: Option<&Path>, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let file = match ns {
        Some(path) => Some((
            File::open(path).map_err(|source| NetnsError::Enter {
                path: path.into(),
                cause: source,
            })?,
            path,
        )),
        None => None,
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some((file, path)) = file {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
                    path: path.into(),
                    cause: e.into(),
                })?;
            }
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)?
    })
}
