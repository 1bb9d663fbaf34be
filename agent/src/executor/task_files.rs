//! A task's secrets and configs as files: a tmpfs of its own (0700, under
//! the task's directory) holding one file per secret or config with the
//! owner and mode the service asked for. Nothing of it ever reaches a disk:
//! the data comes from the assignment, in memory, and goes into the tmpfs;
//! unmounting it when the task is removed frees it. The container runtime
//! binds each file read-only at its target; the process runtime points the
//! task at the directories (`SHOAL_SECRETS_DIR`, `SHOAL_CONFIGS_DIR`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use shoal_control::objects::PayloadFile;

use crate::private_files::private_dir;

/// The environment variables naming the directories for a process task.
pub const SECRETS_DIR_ENV: &str = "SHOAL_SECRETS_DIR";
pub const CONFIGS_DIR_ENV: &str = "SHOAL_CONFIGS_DIR";

/// How files are named in the tmpfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `secrets/0`, `secrets/1`...: each is bound at its target, so two
    /// targets with the same file name do not collide.
    ByIndex,
    /// `secrets/NAME`, NAME the target's file name: what a process task
    /// reads from `$SHOAL_SECRETS_DIR`.
    ByName,
}

/// One file made for the task: where it is on the host, where it goes in
/// the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeFile {
    pub host: PathBuf,
    pub target: String,
}

/// Mounts a tmpfs at `dir` and writes the task's files into it, under
/// `secrets/` and `configs/`. Nothing to write mounts nothing.
pub fn make(
    dir: &Path,
    secrets: &[PayloadFile],
    configs: &[PayloadFile],
    layout: Layout,
) -> io::Result<Vec<MadeFile>> {
    if secrets.is_empty() && configs.is_empty() {
        return Ok(Vec::new());
    }
    private_dir(dir)?;
    let bytes: usize = secrets.iter().chain(configs).map(|f| f.data.0.len()).sum();
    // Room for the data and the directories, in whole pages.
    let size = (bytes + 64 * 1024).div_ceil(4096) * 4096;
    let options = format!("mode=0700,size={size}");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|e| io::Error::other(format!("mounting a tmpfs at {}: {e}", dir.display())))?;
    let written = write_all(dir, secrets, configs, layout);
    if written.is_err() {
        let _ = remove(dir);
    }
    written
}

fn write_all(
    dir: &Path,
    secrets: &[PayloadFile],
    configs: &[PayloadFile],
    layout: Layout,
) -> io::Result<Vec<MadeFile>> {
    let mut made = Vec::new();
    for (sub, files) in [("secrets", secrets), ("configs", configs)] {
        if files.is_empty() {
            continue;
        }
        let sub = dir.join(sub);
        fs::create_dir(&sub)?;
        // Readable by the uid/gid the files are for; each file keeps its
        // own mode.
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755))?;
        for (i, file) in files.iter().enumerate() {
            let name = match layout {
                Layout::ByIndex => i.to_string(),
                Layout::ByName => file_name(&file.path)?,
            };
            let host = sub.join(name);
            write_one(&host, file)?;
            made.push(MadeFile {
                host,
                target: file.path.clone(),
            });
        }
    }
    Ok(made)
}

/// The target's last component, which must be a plain file name.
fn file_name(path: &str) -> io::Result<String> {
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name.to_string()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("target {path} has no file name"),
        )),
    }
}

fn write_one(host: &Path, file: &PayloadFile) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(host)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    e.kind(),
                    format!(
                        "two files would be {}: give them different target file names",
                        host.display()
                    ),
                )
            } else {
                e
            }
        })?;
    out.write_all(&file.data.0)?;
    std::os::unix::fs::fchown(&out, Some(file.uid), Some(file.gid))?;
    out.set_permissions(fs::Permissions::from_mode(file.mode & 0o777))?;
    Ok(())
}

/// Unmounts the task's tmpfs (lazily: a container still holding a file
/// keeps only its own reference) and removes the directory. Not mounted,
/// or already gone, is fine.
pub fn remove(dir: &Path) -> io::Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_target() {
        assert_eq!(file_name("/run/secrets/pw").unwrap(), "pw");
        assert!(file_name("/run/secrets/").is_err());
        assert!(file_name("/x/..").is_err());
    }
}
