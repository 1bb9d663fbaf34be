//! Named local volumes (Docker's `local` driver): a directory per volume
//! under the agent's state, `<root>/<name>/_data`, created the first time a
//! task mounts it (filled, as Docker fills it, with what the image holds at
//! the mount point) and kept until removed; listed for `volume ls`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

/// Why `volume rm` refused.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("No such volume: {0}")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", tasks.join(", "))]
    InUse { name: String, tasks: Vec<String> },
    #[error("remove {name}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// A volume and the tasks of this node whose containers mount it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeUse {
    pub name: String,
    /// Docker's driver name: always `local`.
    pub driver: String,
    /// Its data directory on the node.
    pub mountpoint: PathBuf,
    pub tasks: Vec<String>,
}

/// How deep a copy-up descends.
const MAX_DEPTH: u32 = 128;

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

    /// Every volume with the tasks that use it; `users` maps each task to
    /// the volumes its container mounts.
    pub fn usage<'a>(
        &self,
        users: impl Iterator<Item = (&'a str, &'a [String])>,
    ) -> Vec<VolumeUse> {
        let users: Vec<(&str, &[String])> = users.collect();
        self.list()
            .into_iter()
            .map(|name| VolumeUse {
                driver: "local".into(),
                tasks: users
                    .iter()
                    .filter(|(_, volumes)| volumes.contains(&name))
                    .map(|(task, _)| task.to_string())
                    .collect(),
                mountpoint: self.root.join(&name).join("_data"),
                name,
            })
            .collect()
    }

    /// `volume rm`: refuses a volume `users` (task, its volumes) mount;
    /// `force` only forgives a missing one, as Docker's.
    pub fn remove_unused<'a>(
        &self,
        name: &str,
        force: bool,
        users: impl Iterator<Item = (&'a str, &'a [String])>,
    ) -> Result<(), VolumeError> {
        if !valid_name(name) || !self.root.join(name).join("_data").is_dir() {
            return if force {
                Ok(())
            } else {
                Err(VolumeError::NotFound(name.to_string()))
            };
        }
        let tasks: Vec<String> = users
            .filter(|(_, volumes)| volumes.iter().any(|v| v == name))
            .map(|(task, _)| task.to_string())
            .collect();
        if !tasks.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                tasks,
            });
        }
        self.remove(name).map_err(|source| VolumeError::Io {
            name: name.to_string(),
            source,
        })
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Copies what the image holds at `target` (resolved inside `rootfs`, so
/// no symlink leads out) into a new volume's `data`: files, directories and
/// symlinks with their owners and modes; devices, fifos and sockets are
/// left out. Nothing at `target` copies nothing.
pub fn copy_up(rootfs: &Path, target: &str, data: &Path) -> io::Result<()> {
    let root = File::open(rootfs)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let source = match openat2(&root, target.trim_start_matches('/'), how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(errno(e)),
    };
    let dest: OwnedFd = File::open(data)?.into();
    copy_owner_and_mode(&source, &dest)?;
    copy_dir(&source, &dest, 0)
}

fn copy_owner_and_mode(source: &OwnedFd, dest: &OwnedFd) -> io::Result<()> {
    let st = nix::sys::stat::fstat(source).map_err(errno)?;
    fchown(
        dest,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(errno)?;
    fchmod(dest, Mode::from_bits_truncate(st.st_mode & 0o7777)).map_err(errno)
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

fn copy_dir(source: &OwnedFd, dest: &OwnedFd, depth: u32) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(
            "the image's directory tree is too deep to copy",
        ));
    }
    let listing = Path::new("/proc/self/fd").join(source.as_raw_fd().to_string());
    for entry in fs::read_dir(listing)? {
        let name = entry?.file_name();
        let name = name.as_os_str();
        let st = fstatat(source, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        let (uid, gid) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) {
            SFlag::S_IFDIR => {
                mkdirat(dest, name, Mode::from_bits_truncate(0o700)).map_err(errno)?;
                let (from, to) = (open_dir_at(source, name)?, open_dir_at(dest, name)?);
                copy_dir(&from, &to, depth + 1)?;
                fchown(&to, Some(uid), Some(gid)).map_err(errno)?;
                fchmod(&to, mode).map_err(errno)?;
            }
            SFlag::S_IFREG => {
                let from = openat(
                    source,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                let to = openat(
                    dest,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(errno)?;
                let mut to = File::from(to);
                io::copy(&mut File::from(from), &mut to)?;
                fchown(&to, Some(uid), Some(gid)).map_err(errno)?;
                fchmod(&to, mode).map_err(errno)?;
            }
            SFlag::S_IFLNK => {
                let link = readlinkat(source, name).map_err(errno)?;
                symlinkat(OsStr::from_bytes(link.as_bytes()), dest, name).map_err(errno)?;
                fchownat(
                    dest,
                    name,
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
            }
            _ => {}
        }
    }
    Ok(())
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

    #[test]
    fn a_volume_in_use_is_not_removed() {
        let dir = tempfile::TempDir::new().unwrap();
        let volumes = Volumes::new(dir.path().join("volumes"));
        volumes.ensure("db").unwrap();
        volumes.ensure("cache").unwrap();
        let uses = [("task1".to_string(), vec!["db".to_string()])];
        let users = || uses.iter().map(|(t, v)| (t.as_str(), v.as_slice()));
        let usage = volumes.usage(users());
        assert_eq!(usage.len(), 2);
        assert_eq!(usage[1].name, "db");
        assert_eq!(usage[1].tasks, ["task1"]);
        assert!(usage[0].tasks.is_empty());
        let err = volumes.remove_unused("db", true, users()).unwrap_err();
        assert_eq!(err.to_string(), "remove db: volume is in use - [task1]");
        assert_eq!(volumes.list(), ["cache", "db"]);
        volumes.remove_unused("cache", false, users()).unwrap();
        assert_eq!(volumes.list(), ["db"]);
        assert!(matches!(
            volumes.remove_unused("cache", false, users()),
            Err(VolumeError::NotFound(_))
        ));
        volumes.remove_unused("cache", true, users()).unwrap();
        assert!(volumes.remove_unused("../x", false, users()).is_err());
    }

    #[test]
    fn copy_up_copies_the_image_content_without_following_links_out() {
        let dir = tempfile::TempDir::new().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("var/lib/app/sub")).unwrap();
        fs::write(rootfs.join("var/lib/app/config"), "c").unwrap();
        fs::write(rootfs.join("var/lib/app/sub/deep"), "d").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("var/lib/app/shadow")).unwrap();
        fs::write(dir.path().join("outside"), "host").unwrap();
        // A link that would lead out of the rootfs if followed from the host.
        std::os::unix::fs::symlink(dir.path(), rootfs.join("escape")).unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        copy_up(&rootfs, "/var/lib/app", &data).unwrap();
        assert_eq!(fs::read_to_string(data.join("config")).unwrap(), "c");
        assert_eq!(fs::read_to_string(data.join("sub/deep")).unwrap(), "d");
        assert_eq!(
            fs::read_link(data.join("shadow")).unwrap(),
            Path::new("/etc/shadow")
        );
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        copy_up(&rootfs, "/escape", &other).unwrap();
        assert_eq!(
            fs::read_dir(&other).unwrap().count(),
            0,
            "the link resolved inside the rootfs"
        );
        copy_up(&rootfs, "/missing", &other).unwrap();
    }
}
