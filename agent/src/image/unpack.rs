//! Unpacking one layer (a tar, plain, gzip or zstd) into a directory that
//! overlayfs can use as a lower layer, hashing the uncompressed stream on
//! the way (its digest is the layer's diff_id).
//!
//! Nothing the tar holds can reach outside the directory: paths are cleaned
//! (`..` stops at the top, absolute paths are relative to it), every parent
//! is opened with `openat2(RESOLVE_IN_ROOT)` (a symlink resolves as it would
//! in a chroot of the layer), the last component is never followed, and a
//! hard link's target resolves the same way. OCI whiteouts become
//! overlayfs's: `.wh.NAME` a `c 0 0` device named NAME, `.wh..wh..opq` the
//! `trusted.overlay.opaque` xattr on its directory. Needs root (ownership,
//! devices, trusted xattrs).

use shoal_control::error_chain::ErrorChain;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};

use super::digest::{Digest, HashingReader};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
use std::ffi::CStr;

/// What an unpacked layer turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// The sha256 of the uncompressed tar: the layer's diff_id.
    pub diff_id: Digest,
    /// Bytes of uncompressed tar read.
    pub size: u64,
}

/// Why a layer could not be unpacked; the caller names the layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer")]
    Read(#[source] io::Error),
    #[error("`{path}`")]
    Entry { path: String, source: io::Error },
    #[error("cannot open the layer directory {}", dir.display())]
    Dest { dir: PathBuf, source: io::Error },
}

/// Unpacks `layer` (compression sniffed from its first bytes) into `dest`,
/// an existing empty directory.
pub fn unpack(layer: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    let root: OwnedFd = File::open(dest)
        .map_err(|source| UnpackError::Dest {
            dir: dest.to_path_buf(),
            source,
        })?
        .into();
    let mut hashing = HashingReader::new(decompress(layer).map_err(UnpackError::Read)?);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(UnpackError::Read)?;
        for entry in entries {
            let mut entry = entry.map_err(UnpackError::Read)?;
            let raw_path = entry.path_bytes().into_owned();
            apply(&root, &mut entry).map_err(|source| UnpackError::Entry {
                path: String::from_utf8_lossy(&raw_path).into_owned(),
                source,
            })?;
        }
    }
    let (diff_id, size) = hashing.finish().map_err(UnpackError::Read)?;
    Ok(Unpacked { diff_id, size })
}

/// The layer's bytes decompressed, by their magic number: gzip `1f 8b`,
/// zstd `28 b5 2f fd`, else a plain tar.
pub fn decompress<'a>(layer: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(64 << 10, layer);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.chain().to_string()))?;
        return Ok(Box::new(decoder));
    }
    Ok(Box::new(reader))
}

/// A path cleaned lexically: no empty, `.` or `..` components; `..` at the
/// top stays at the top.
pub fn clean(path: &[u8]) -> Vec<OsString> {
    let mut parts: Vec<OsString> = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            name => parts.push(OsStr::from_bytes(name).to_os_string()),
        }
    }
    parts
}

fn join(parts: &[OsString]) -> PathBuf {
    let mut path = PathBuf::new();
    for part in parts {
        path.push(part);
    }
    path
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn other(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Opens a directory of the layer, the path resolved as in a chroot of it.
fn resolve_dir(root: &OwnedFd, parts: &[OsString]) -> Result<OwnedFd, Errno> {
    if parts.is_empty() {
        return openat(
            root,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
    }
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, &join(parts), how)
}

/// Opens (creating what is missing, mode 0755) the directory `parts`.
fn ensure_dir(root: &OwnedFd, parts: &[OsString]) -> io::Result<OwnedFd> {
    match resolve_dir(root, parts) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(errno(e)),
    }
    let mut current = resolve_dir(root, &[]).map_err(errno)?;
    for i in 0..parts.len() {
        current = match resolve_dir(root, &parts[..=i]) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    &current,
                    parts[i].as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(errno(e)),
                }
                resolve_dir(root, &parts[..=i]).map_err(errno)?
            }
            Err(e) => return Err(errno(e)),
        };
    }
    Ok(current)
}

/// What is at `name` in `dir`, not following a symlink.
fn kind_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<SFlag>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Removes whatever is at `name` in `dir` (a directory with its content).
fn remove_at(dir: &OwnedFd, name: &OsStr, kind: SFlag) -> io::Result<()> {
    if kind == SFlag::S_IFDIR {
        // The /proc link names our own open directory; remove_dir_all never
        // follows a symlink below it.
        let path = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        return std::fs::remove_dir_all(path);
    }
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(errno)
}

fn valid_name(name: &OsStr) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.as_bytes().contains(&b'/')
}

/// Applies one tar entry to the layer directory.
fn apply<R: Read>(root: &OwnedFd, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
    ) {
        return Ok(());
    }
    let parts = clean(&entry.path_bytes());
    let Some((name, parent)) = parts.split_last() else {
        // The layer's top directory itself: it keeps the store's mode.
        return Ok(());
    };
    let name_bytes = name.as_bytes();
    if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        let dir = ensure_dir(root, parent)?;
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            return set_opaque(&dir);
        }
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are aufs bookkeeping, not content.
            return Ok(());
        }
        let hidden = OsStr::from_bytes(hidden);
        if !valid_name(hidden) {
            return Err(other("a whiteout that names no file"));
        }
        if let Some(existing) = kind_at(&dir, hidden)? {
            remove_at(&dir, hidden, existing)?;
        }
        return mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(errno);
    }
    let dir = ensure_dir(root, parent)?;
    let header = entry.header();
    // An empty numeric field reads as 0, as Go's archive/tar reads it.
    let default_mode = if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    };
    let mode =
        Mode::from_bits_truncate((header.mode().unwrap_or(default_mode) & 0o7777) as libc::mode_t);
    let uid = Uid::from_raw(
        u32::try_from(header.uid().unwrap_or(0)).map_err(|_| other("uid out of range"))?,
    );
    let gid = Gid::from_raw(
        u32::try_from(header.gid().unwrap_or(0)).map_err(|_| other("gid out of range"))?,
    );
    let mtime = header.mtime().unwrap_or(0) as i64;
    let existing = kind_at(&dir, name)?;
    if let Some(existing) = existing {
        let keep = existing == SFlag::S_IFDIR && kind == tar::EntryType::Directory;
        if !keep {
            remove_at(&dir, name, existing)?;
        }
    }
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let fd = openat(
                &dir,
                name.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(errno)?;
            let mut file = File::from(fd);
            io::copy(entry, &mut file)?;
            apply_xattrs(&file, entry)?;
            fchown(&file, Some(uid), Some(gid)).map_err(errno)?;
            fchmod(&file, mode).map_err(errno)?;
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(&file, &t, &t).map_err(errno)?;
        }
        tar::EntryType::Directory => {
            if existing != Some(SFlag::S_IFDIR) {
                mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(errno)?;
            }
            let fd = openat(
                &dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)?;
            fchown(&fd, Some(uid), Some(gid)).map_err(errno)?;
            fchmod(&fd, mode).map_err(errno)?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| other("a symlink without a target"))?
                .into_owned();
            symlinkat(OsStr::from_bytes(&target), &dir, name.as_os_str()).map_err(errno)?;
            fchownat(
                &dir,
                name.as_os_str(),
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
            let t = TimeSpec::new(mtime, 0);
            utimensat(
                &dir,
                name.as_os_str(),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(errno)?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| other("a hard link without a target"))?
                .into_owned();
            let target = clean(&target);
            let Some((target_name, target_parent)) = target.split_last() else {
                return Err(other("a hard link to the layer's top directory"));
            };
            let target_dir = resolve_dir(root, target_parent).map_err(errno)?;
            linkat(
                &target_dir,
                target_name.as_os_str(),
                &dir,
                name.as_os_str(),
                AtFlags::empty(),
            )
            .map_err(errno)?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let sflag = match kind {
                tar::EntryType::Char => SFlag::S_IFCHR,
                tar::EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let dev = nix::sys::stat::makedev(major.into(), minor.into());
            mknodat(&dir, name.as_os_str(), sflag, mode, dev).map_err(errno)?;
            fchownat(
                &dir,
                name.as_os_str(),
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        // Anything else (GNU volume headers...) carries no file.
        _ => {}
    }
    Ok(())
}

/// Marks a directory opaque for overlayfs.
fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: the name and value are live NUL-terminated / sized buffers for
    // the call; `dir` is an open directory descriptor we own.
    let ret = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            OPAQUE_XATTR.as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the file's extended attributes from the entry's PAX records,
/// only in the `user.` namespace and file capabilities: `trusted.` ones
/// (overlayfs's own) and the rest never come from an image.
fn apply_xattrs<R: Read>(file: &File, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    for ext in extensions {
        let ext = ext?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let name = CString::new(name.to_vec()).map_err(|_| other("an xattr name with a NUL"))?;
        let value = ext.value_bytes();
        // SAFETY: `name` is NUL-terminated and `value` a live slice, both for
        // the whole call; the descriptor is the open file.
        let ret = unsafe {
            libc::fsetxattr(
                file.as_fd().as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A path name as the tar gives it, for tests and messages.
pub fn display(parts: &[OsString]) -> String {
    String::from_utf8_lossy(&join(parts).into_os_string().into_vec()).into_owned()
}

#[cfg(test)]
mod tests;
