//! Caps the disk a task's output takes, so that a chatty task cannot fill
//! the disk that holds the Raft files. A task writes straight to its log
//! files (it outlives the agent), so they cannot be renamed and reopened
//! under it; instead, once a log holds more than its limit, the oldest part
//! is punched out (`fallocate(PUNCH_HOLE)`): its blocks go back to the
//! filesystem while every offset stays where it was, so readers' cursors
//! and the marks that time the output stay valid. The marks file loses the
//! records of the output that went. What a log still holds starts at its
//! first data block ([`first_kept`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};
use nix::unistd::{lseek, Whence};

use super::marks;
use crate::executor::Stream;

/// The default limit of each of a task's outputs.
pub const DEFAULT_LOG_LIMIT: u64 = 32 << 20;

/// The first offset of `log` that still holds output: the start of its first
/// data block (0 when nothing was punched, the size when nothing is left).
pub(crate) fn first_kept(log: &File) -> io::Result<u64> {
    match lseek(log, 0, Whence::SeekData) {
        Ok(offset) => Ok(u64::try_from(offset).unwrap_or(0)),
        // No data at or after 0: empty, or all of it punched.
        Err(Errno::ENXIO) => Ok(log.metadata()?.len()),
        Err(e) => Err(e.into()),
    }
}

/// Punches the oldest output of `stream` in `task_dir` out when more than
/// `limit` bytes of it are kept, keeping about the newest half of the limit.
/// Returns the first offset kept afterwards, if anything was punched.
pub(crate) fn cap(task_dir: &Path, stream: Stream, limit: u64) -> io::Result<Option<u64>> {
    let path = marks::log_path(task_dir, stream);
    let log = match OpenOptions::new().write(true).open(&path) {
        Ok(log) => log,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = log.metadata()?;
    let size = meta.len();
    let kept = first_kept(&log)?;
    if size.saturating_sub(kept) <= limit {
        return Ok(None);
    }
    // Holes cover whole blocks only: cut at a block boundary.
    let block = meta.blksize().max(512);
    let cut = (size - limit / 2) / block * block;
    if cut <= kept {
        return Ok(None);
    }
    punch(&log, cut)?;
    let marks_path = marks::marks_path(task_dir, stream);
    if let Some(records) = marks::count_before(&marks_path, cut)? {
        let marks_file = OpenOptions::new().write(true).open(&marks_path)?;
        let marks_block = marks_file.metadata()?.blksize().max(512);
        let bytes = records * marks::RECORD / marks_block * marks_block;
        if bytes > 0 {
            punch(&marks_file, bytes)?;
        }
    }
    Ok(Some(first_kept(&log)?))
}

/// Gives the blocks of `file` below `end` back to the filesystem.
fn punch(file: &File, end: u64) -> io::Result<()> {
    let len = i64::try_from(end).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(file, flags, 0, len).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::executor::LogMark;

    #[test]
    fn a_log_over_its_limit_keeps_its_offsets_and_frees_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = marks::log_path(dir.path(), Stream::Stdout);
        let mut log = crate::private_files::open_append(&path).unwrap();
        let line = |i: u32| format!("line {i:07} {}\n", "x".repeat(100));
        let mut written = 0u64;
        for i in 0..40_000 {
            let text = line(i);
            log.write_all(text.as_bytes()).unwrap();
            written += text.len() as u64;
            if i % 100 == 99 {
                marks::append(
                    &marks::marks_path(dir.path(), Stream::Stdout),
                    LogMark {
                        offset: written,
                        time_ns: u64::from(i),
                    },
                )
                .unwrap();
            }
        }
        log.sync_all().unwrap();
        let limit = 1 << 20;
        assert_eq!(first_kept(&File::open(&path).unwrap()).unwrap(), 0);
        let kept = cap(dir.path(), Stream::Stdout, limit)
            .unwrap()
            .expect("over the limit");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), written, "the size (and every offset) stays");
        assert!(
            kept > written - limit && kept <= written - limit / 2 + 4096,
            "{kept}"
        );
        assert!(
            meta.blocks() * 512 <= limit + 64 * 1024,
            "{} bytes on disk",
            meta.blocks() * 512
        );
        // Output past the cut reads as it was written.
        let text = std::fs::read(&path).unwrap();
        let tail = String::from_utf8_lossy(&text[kept as usize..]);
        assert!(tail.ends_with(&line(39_999)));
        // Marks of what is kept are still found; those punched read as zeros,
        // which sort first, so bisection still works.
        let marks_path = marks::marks_path(dir.path(), Stream::Stdout);
        let found = marks::covering(&marks_path, kept, written).unwrap();
        assert_eq!(found.last().unwrap().offset, written);
        assert!(found.iter().all(|m| m.offset > kept));
        // Under the limit again: nothing more to do.
        assert_eq!(cap(dir.path(), Stream::Stdout, limit).unwrap(), None);
    }
}
