//! When each part of a task's output was written. A task writes straight to
//! its log files (so it outlives the agent), which hold no times; the
//! runtime samples their sizes and keeps, beside each, a `.marks` file of
//! [`LogMark`]s: fixed 16-byte records (offset, then Unix nanoseconds, both
//! little-endian) in offset order, searched by bisection.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::executor::{LogMark, Stream};

/// Bytes per record.
pub(crate) const RECORD: u64 = 16;

/// The log file of `stream` in a task directory.
pub(crate) fn log_path(task_dir: &Path, stream: Stream) -> PathBuf {
    task_dir.join(match stream {
        Stream::Stdout => "stdout.log",
        Stream::Stderr => "stderr.log",
    })
}

/// The marks file beside it.
pub(crate) fn marks_path(task_dir: &Path, stream: Stream) -> PathBuf {
    task_dir.join(match stream {
        Stream::Stdout => "stdout.marks",
        Stream::Stderr => "stderr.marks",
    })
}

/// A log file's size and last write, as a mark; `None` when it does not
/// exist.
pub(crate) fn current(log: &Path) -> io::Result<Option<LogMark>> {
    let meta = match std::fs::metadata(log) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let time_ns = meta.modified().map_or(0, unix_ns);
    Ok(Some(LogMark {
        offset: meta.len(),
        time_ns,
    }))
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn decode(bytes: &[u8; RECORD as usize]) -> LogMark {
    let (offset, time) = bytes.split_at(8);
    LogMark {
        offset: u64::from_le_bytes(offset.try_into().unwrap_or_default()),
        time_ns: u64::from_le_bytes(time.try_into().unwrap_or_default()),
    }
}

fn read_at(file: &File, index: u64) -> io::Result<LogMark> {
    let mut bytes = [0u8; RECORD as usize];
    file.read_exact_at(&mut bytes, index * RECORD)?;
    Ok(decode(&bytes))
}

/// How many whole records the file holds (a torn last one is ignored).
fn count(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.len() / RECORD)
}

/// The last mark of a marks file; `None` when it has none.
pub(crate) fn last(path: &Path) -> io::Result<Option<LogMark>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match count(&file)? {
        0 => Ok(None),
        n => read_at(&file, n - 1).map(Some),
    }
}

/// Appends a mark. Never creates the task directory, so a task removed
/// meanwhile stays removed.
pub(crate) fn append(path: &Path, mark: LogMark) -> io::Result<()> {
    let mut record = [0u8; RECORD as usize];
    record[..8].copy_from_slice(&mark.offset.to_le_bytes());
    record[8..].copy_from_slice(&mark.time_ns.to_le_bytes());
    let mut file = crate::private_files::open_append(path)?;
    // A record torn by a crash would shift every later one: drop it.
    let len = file.metadata()?.len();
    if len % RECORD != 0 {
        file.set_len(len - len % RECORD)?;
    }
    file.write_all(&record)
}

/// How many records mark output at or before `offset` (records punched out
/// by rotation read as zeros and count among them); `None` when there is
/// no marks file.
pub(crate) fn count_before(path: &Path, offset: u64) -> io::Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    first_past(&file, offset).map(Some)
}

/// The index of the first record whose offset is past `from`.
fn first_past(file: &File, from: u64) -> io::Result<u64> {
    let (mut lo, mut hi) = (0, count(file)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if read_at(file, mid)?.offset <= from {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The marks past `from`, up to and including the first at or past `to`
/// (see [`crate::executor::Runtime::log_marks`]); empty when there is no
/// marks file.
pub(crate) fn covering(path: &Path, from: u64, to: u64) -> io::Result<Vec<LogMark>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let n = count(&file)?;
    let lo = first_past(&file, from)?;
    let mut marks = Vec::new();
    for index in lo..n {
        let mark = read_at(&file, index)?;
        marks.push(mark);
        if mark.offset >= to {
            break;
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn mark(offset: u64, time_ns: u64) -> LogMark {
        LogMark { offset, time_ns }
    }

    #[test]
    fn marks_are_found_by_bisection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stdout.marks");
        assert_eq!(last(&path).unwrap(), None);
        assert!(covering(&path, 0, 100).unwrap().is_empty());
        for (offset, time) in [(10, 1), (20, 2), (35, 3), (50, 4)] {
            append(&path, mark(offset, time)).unwrap();
        }
        assert_eq!(last(&path).unwrap(), Some(mark(50, 4)));
        // Lines ending in 11..=35 are timed by the marks at 20 and 35.
        assert_eq!(covering(&path, 10, 35).unwrap(), [mark(20, 2), mark(35, 3)]);
        // A range ending between marks takes the next one too.
        assert_eq!(covering(&path, 0, 12).unwrap(), [mark(10, 1), mark(20, 2)]);
        assert_eq!(covering(&path, 50, 60).unwrap(), []);
        assert_eq!(covering(&path, 40, 60).unwrap(), [mark(50, 4)]);
    }

    #[test]
    fn a_torn_record_is_skipped_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stderr.marks");
        append(&path, mark(5, 1)).unwrap();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        assert_eq!(last(&path).unwrap(), Some(mark(5, 1)));
        append(&path, mark(9, 2)).unwrap();
        assert_eq!(covering(&path, 0, 9).unwrap(), [mark(5, 1), mark(9, 2)]);
    }

    #[test]
    fn no_mark_lands_in_a_removed_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = dir.path().join("task");
        assert!(append(&marks_path(&gone, Stream::Stdout), mark(1, 1)).is_err());
        assert!(!gone.exists());
        assert_eq!(current(&log_path(&gone, Stream::Stdout)).unwrap(), None);
    }
}
