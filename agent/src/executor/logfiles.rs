//! Reading a task's output files the way every runtime keeps them: the
//! `stdout.log` / `stderr.log` a task writes straight into (so it outlives
//! the agent) and the `.marks` beside them that time it (see
//! `process::marks`).

use shoal_control::error_chain::ErrorChain;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::process::marks;
use super::{ExecutorError, LogMark, Stream};

fn io_err(task: &str, path: PathBuf) -> impl FnOnce(io::Error) -> ExecutorError {
    let task = task.to_string();
    move |source| ExecutorError::Io { task, path, source }
}

/// Up to `max` bytes of `stream` from `offset`, and the next offset.
pub(crate) fn read(
    task: &str,
    dir: &Path,
    stream: Stream,
    offset: u64,
    max: usize,
) -> Result<(Vec<u8>, u64), ExecutorError> {
    let path = marks::log_path(dir, stream);
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.take(max as u64).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(io_err(task, path.clone()))?;
    let next = offset + bytes.len() as u64;
    Ok((bytes, next))
}

/// How many bytes `stream` holds.
pub(crate) fn size(task: &str, dir: &Path, stream: Stream) -> Result<u64, ExecutorError> {
    let path = marks::log_path(dir, stream);
    let current = marks::current(&path).map_err(io_err(task, path.clone()))?;
    Ok(current.map_or(0, |m| m.offset))
}

/// The marks timing bytes `from..to` of `stream`; the file's size and last
/// write stand in for bytes no mark covers yet.
pub(crate) fn covering(
    task: &str,
    dir: &Path,
    stream: Stream,
    from: u64,
    to: u64,
) -> Result<Vec<LogMark>, ExecutorError> {
    let log = marks::log_path(dir, stream);
    let path = marks::marks_path(dir, stream);
    let mut found = marks::covering(&path, from, to).map_err(io_err(task, path.clone()))?;
    if found.last().is_none_or(|m| m.offset < to) {
        let live = marks::current(&log).map_err(io_err(task, log.clone()))?;
        if let Some(live) = live.filter(|m| m.offset > from) {
            let floor = found.last().map_or(0, |m| m.time_ns);
            found.push(LogMark {
                offset: live.offset,
                time_ns: live.time_ns.max(floor),
            });
        }
    }
    Ok(found)
}

/// Appends a mark for each output of the task in `dir` that grew past
/// `marked` (updated).
pub(crate) fn mark(task: &str, dir: &Path, marked: &mut [u64; 2]) {
    for (i, stream) in Stream::BOTH.into_iter().enumerate() {
        let Ok(Some(now)) = marks::current(&marks::log_path(dir, stream)) else {
            continue;
        };
        if now.offset <= marked[i] {
            continue;
        }
        match marks::append(&marks::marks_path(dir, stream), now) {
            Ok(()) => marked[i] = now.offset,
            Err(e) => tracing::debug!(task = %task, "cannot record a log mark: {}", e.chain()),
        }
    }
}

/// The offsets of the last marks of a task's outputs.
pub(crate) fn last_marked(dir: &Path) -> [u64; 2] {
    Stream::BOTH.map(|s| {
        marks::last(&marks::marks_path(dir, s))
            .ok()
            .flatten()
            .map_or(0, |m| m.offset)
    })
}
