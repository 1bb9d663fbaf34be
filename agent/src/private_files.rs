//! Files only root may read: the agent's state dir is 0700 and every file it
//! writes there is 0600, created with `create_new` so that a file planted in
//! advance (or left by a crash) is never written through. Replacing a file
//! writes a new one, fsyncs it, renames it over the old one and fsyncs the
//! directory, so a crash leaves either the old or the new content.
//!
//! Also the test hook that aborts the process at a named write step
//! (`SHOAL_CRASH_AT`), for the crash-point tests of key replacement.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Mode of every directory the agent keeps secrets under.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file it writes there.
pub const FILE_MODE: u32 = 0o600;

/// Names the test hook reads: the agent aborts when it reaches the write
/// step named by this variable.
pub const CRASH_AT_ENV: &str = "SHOAL_CRASH_AT";

/// Creates `dir` (and missing parents) with mode 0700, or narrows an
/// existing one to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    restrict(dir, DIR_MODE)
}

/// Sets `path`'s mode to `mode` unless it already is exactly that.
pub fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode))
}

/// Writes a new file at `path` (it must not exist) with mode 0600 and
/// fsyncs it.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Opens a new file (it must not exist) with mode 0600 for writing.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Opens `path` for appending, creating it with mode 0600 if missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)?;
    restrict(path, FILE_MODE)?;
    Ok(file)
}

/// Replaces the file at `path` with `bytes` in one step: a new 0600 file
/// beside it, fsynced, renamed over it, and the directory fsynced. The
/// directory must exist.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let written = write_new(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// The temporary file [`replace`] writes before renaming: a hidden name in
/// the same directory, unique to this process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Makes a directory's entries (new files, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The test hook: aborts the process, as a crash would, when
/// [`CRASH_AT_ENV`] names `step`. Does nothing otherwise.
pub fn crash_point(step: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(CRASH_AT_ENV).ok());
    if target.as_deref() == Some(step) {
        eprintln!("{CRASH_AT_ENV}={step}: aborting here, as a crash would");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn dirs_and_files_are_private_even_when_they_existed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("f");
        write_new(&file, b"one").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            write_new(&file, b"two").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        replace(&file, b"three").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"three");
        assert_eq!(mode(&file), 0o600);
        let log = dir.join("log");
        fs::write(&log, b"x").unwrap();
        fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        open_append(&log).unwrap().write_all(b"y").unwrap();
        assert_eq!(mode(&log), 0o600);
        assert_eq!(fs::read(&log).unwrap(), b"xy");
    }

    #[test]
    fn replace_writes_through_no_planted_link() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("victim");
        fs::write(&target, b"untouched").unwrap();
        let file = root.path().join("secret");
        // A link planted where the temporary file goes is removed, not
        // followed.
        std::os::unix::fs::symlink(&target, temp_path(&file)).unwrap();
        replace(&file, b"key").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
        assert_eq!(fs::read(&file).unwrap(), b"key");
        assert_eq!(mode(&file), 0o600);
    }
}
