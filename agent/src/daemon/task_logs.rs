//! The node's side of `service logs`: answers the leader's log fetches (in
//! heartbeat answers) from the runtime's copy of each task's output. An
//! answer holds complete lines of both streams, merged in the order they
//! were written, within the fetch's byte budget; `--tail N` is resolved
//! here, where the output is. Never decides which tasks are read: the
//! leader does.

use shoal_control::error_chain::ErrorChain;
use std::sync::Arc;

use shoal_control::api::{LogChunk, LogCursor, LogFetch, LogLine, LogStart, LogStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecutorError, LogMark, ProcessState, Runtime, Stream};

/// The most output one answer carries, whatever the fetch asks.
pub const MAX_FETCH_BYTES: u64 = 1 << 20;
/// How much `--tail` reads at a time, scanning back for line starts.
const SCAN_BLOCK: usize = 64 * 1024;

/// Answers fetches as they come, one batch per heartbeat answer.
pub struct LogReader {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LogReader {
    pub fn start(
        runtime: Arc<dyn Runtime>,
        mut fetches: mpsc::Receiver<Vec<LogFetch>>,
        chunks: mpsc::Sender<Vec<LogChunk>>,
    ) -> LogReader {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = token.cancelled() => return,
                    batch = fetches.recv() => match batch {
                        Some(batch) => batch,
                        None => return,
                    },
                };
                let runtime = runtime.clone();
                let read = tokio::task::spawn_blocking(move || {
                    batch.iter().map(|f| read(runtime.as_ref(), f)).collect()
                });
                match read.await {
                    Ok(answers) => {
                        if chunks.send(answers).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("reading task logs: {}", e.chain()),
                }
            }
        });
        LogReader { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn runtime_stream(stream: LogStream) -> Stream {
    match stream {
        LogStream::Stdout => Stream::Stdout,
        LogStream::Stderr => Stream::Stderr,
    }
}

/// Answers one fetch. Blocks on file reads.
pub fn read(runtime: &dyn Runtime, fetch: &LogFetch) -> LogChunk {
    let mut chunk = LogChunk {
        fetch_id: fetch.id,
        task_id: fetch.task_id.clone(),
        ..LogChunk::default()
    };
    // The state before the output: a task seen ended has written its last.
    let ended = match runtime.state(&fetch.task_id) {
        None => {
            chunk.missing = true;
            return chunk;
        }
        Some(ProcessState::Exited(_)) => true,
        Some(ProcessState::Running { .. }) => false,
    };
    let task = TaskOutput {
        runtime,
        task_id: &fetch.task_id,
        ended,
    };
    let budget = fetch.max_bytes.clamp(1, MAX_FETCH_BYTES);
    let read = match fetch.start {
        LogStart::At(cursor) => Ok(cursor),
        LogStart::Tail(n) => task.tail_start(n),
    }
    .and_then(|start| task.lines_from(start, budget));
    match read {
        Ok(lines) => {
            chunk.ended = ended && !lines.more;
            chunk.lines = lines.lines;
            chunk.next = lines.next;
            chunk.more = lines.more;
        }
        Err(ExecutorError::Unknown(_)) => chunk.missing = true,
        Err(e) => chunk.error = Some(e.chain().to_string()),
    }
    chunk
}

/// One line found in a stream: bytes `start..end` (its newline included).
#[derive(Debug)]
struct Found {
    stream: LogStream,
    start: u64,
    end: u64,
    time_ns: Option<u64>,
    text: String,
}

/// What a read gathered.
struct Lines {
    lines: Vec<LogLine>,
    next: LogCursor,
    more: bool,
}

/// One task's output as the runtime holds it.
struct TaskOutput<'a> {
    runtime: &'a dyn Runtime,
    task_id: &'a str,
    /// Its process has ended: a last line without a newline is complete.
    ended: bool,
}

impl TaskOutput<'_> {
    /// Complete lines from `start`, both streams merged by time, at most
    /// `budget` bytes of them (one line at least).
    fn lines_from(&self, start: LogCursor, budget: u64) -> Result<Lines, ExecutorError> {
        let mut found = Vec::new();
        let mut more = false;
        // Lines written after this may not be taken: a stream read only up
        // to its budget may hold earlier ones not read yet.
        let mut horizon = u64::MAX;
        for stream in LogStream::BOTH {
            let (from, bytes) = self.read_kept(stream, start.get(stream), budget)?;
            let full = bytes.len() as u64 >= budget;
            // What follows the last newline is a whole line if the task
            // ended, or a piece of one longer than the budget.
            let tail_is_line = if full {
                !bytes.contains(&b'\n')
            } else {
                self.ended
            };
            let spans = split_lines(&bytes, tail_is_line);
            let Some(&(_, last_end)) = spans.last() else {
                more |= full;
                continue;
            };
            let marks = self.marks(stream, from, from + last_end as u64)?;
            let lines: Vec<Found> = spans
                .into_iter()
                .map(|(s, e)| Found {
                    stream,
                    start: from + s as u64,
                    end: from + e as u64,
                    time_ns: time_of(&marks, from + e as u64),
                    text: text_of(&bytes[s..e]),
                })
                .collect();
            if full {
                more = true;
                let last = lines.last().and_then(|l| l.time_ns).unwrap_or(u64::MAX);
                horizon = horizon.min(last);
            }
            found.extend(lines);
        }
        // Stable: within a stream, and stdout before stderr on a tie.
        found.sort_by_key(|l| l.time_ns.unwrap_or(u64::MAX));
        let mut next = start;
        let mut lines = Vec::new();
        let mut used = 0;
        for line in found {
            let size = line.end - line.start;
            let over_budget = !lines.is_empty() && used + size > budget;
            if over_budget || line.time_ns.unwrap_or(u64::MAX) > horizon {
                more = true;
                break;
            }
            used += size;
            next.set(line.stream, line.end);
            lines.push(LogLine {
                stream: line.stream,
                time_ns: line.time_ns,
                text: line.text,
            });
        }
        Ok(Lines { lines, next, more })
    }

    /// Up to `budget` bytes of `stream` from `cursor`, and the offset they
    /// start at. When the output at `cursor` was rotated away, the read
    /// starts at the first whole line still kept.
    fn read_kept(
        &self,
        stream: LogStream,
        cursor: u64,
        budget: u64,
    ) -> Result<(u64, Vec<u8>), ExecutorError> {
        let runtime_stream = runtime_stream(stream);
        let kept = self.runtime.log_start(self.task_id, runtime_stream)?;
        if cursor >= kept {
            let (bytes, _) =
                self.runtime
                    .logs(self.task_id, runtime_stream, cursor, budget as usize)?;
            return Ok((cursor, bytes));
        }
        let (bytes, _) = self
            .runtime
            .logs(self.task_id, runtime_stream, kept, budget as usize)?;
        // The rotation cut at a block boundary, likely within a line.
        Ok(match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => (kept + i as u64 + 1, bytes[i + 1..].to_vec()),
            None => (kept, bytes),
        })
    }

    /// Where the last `n` lines of both streams together begin.
    fn tail_start(&self, n: u64) -> Result<LogCursor, ExecutorError> {
        let mut start = LogCursor::default();
        let mut candidates = Vec::new();
        for stream in LogStream::BOTH {
            let size = self
                .runtime
                .log_size(self.task_id, runtime_stream(stream))?;
            let kept = self
                .runtime
                .log_start(self.task_id, runtime_stream(stream))?;
            // A running task's unfinished last line is not a line yet.
            let end = if self.ended || size == 0 {
                size
            } else {
                self.newlines_before(stream, size, 1, kept)?
                    .first()
                    .map_or(kept, |p| p + 1)
            };
            start.set(stream, end);
            if end <= kept || n == 0 {
                continue;
            }
            // The last line's own newline does not start a line.
            let mut starts: Vec<u64> = self
                .newlines_before(stream, end - 1, n, kept)?
                .into_iter()
                .map(|p| p + 1)
                .collect();
            // Fewer lines than asked: the first one starts at the beginning,
            // unless rotation cut it (then it is left out).
            if (starts.len() as u64) < n && kept == 0 {
                starts.push(0);
            }
            if starts.is_empty() {
                continue;
            }
            starts.reverse();
            let marks = self.marks(stream, starts[0], end)?;
            let ends = starts.iter().skip(1).copied().chain([end]);
            for (s, e) in starts.iter().copied().zip(ends) {
                candidates.push((time_of(&marks, e).unwrap_or(u64::MAX), stream, s));
            }
        }
        candidates.sort_by_key(|&(time, _, _)| time);
        let keep = candidates.len().saturating_sub(n as usize);
        for &(_, stream, s) in &candidates[keep..] {
            if s < start.get(stream) {
                start.set(stream, s);
            }
        }
        Ok(start)
    }

    /// The offsets of the last `limit` newlines in `floor..end`, last first.
    fn newlines_before(
        &self,
        stream: LogStream,
        end: u64,
        limit: u64,
        floor: u64,
    ) -> Result<Vec<u64>, ExecutorError> {
        let mut found = Vec::new();
        let mut block_end = end;
        while block_end > floor && (found.len() as u64) < limit {
            let block_start = block_end.saturating_sub(SCAN_BLOCK as u64).max(floor);
            let (bytes, _) = self.runtime.logs(
                self.task_id,
                runtime_stream(stream),
                block_start,
                (block_end - block_start) as usize,
            )?;
            for (i, _) in bytes.iter().enumerate().rev().filter(|(_, b)| **b == b'\n') {
                found.push(block_start + i as u64);
                if found.len() as u64 == limit {
                    break;
                }
            }
            if bytes.is_empty() {
                break;
            }
            block_end = block_start;
        }
        Ok(found)
    }

    fn marks(&self, stream: LogStream, from: u64, to: u64) -> Result<Vec<LogMark>, ExecutorError> {
        self.runtime
            .log_marks(self.task_id, runtime_stream(stream), from, to)
    }
}

/// The lines of `bytes` as `start..end` spans, newline included; bytes
/// after the last newline make one more only when `tail_is_line`.
fn split_lines(bytes: &[u8], tail_is_line: bool) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        spans.push((start, i + 1));
        start = i + 1;
    }
    if start < bytes.len() && tail_is_line {
        spans.push((start, bytes.len()));
    }
    spans
}

/// The time of the first mark at or past `end`.
fn time_of(marks: &[LogMark], end: u64) -> Option<u64> {
    let i = marks.partition_point(|m| m.offset < end);
    marks.get(i).map(|m| m.time_ns)
}

fn text_of(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Exit, FakeRuntime};

    fn runtime() -> FakeRuntime {
        let rt = FakeRuntime::new();
        rt.adopt("t", ProcessState::Running { pid: 1 });
        rt
    }

    fn fetch(start: LogStart, max_bytes: u64) -> LogFetch {
        LogFetch {
            id: 7,
            task_id: "t".into(),
            start,
            max_bytes,
        }
    }

    fn texts(chunk: &LogChunk) -> Vec<String> {
        chunk
            .lines
            .iter()
            .map(|l| match l.stream {
                LogStream::Stdout => l.text.clone(),
                LogStream::Stderr => format!("E:{}", l.text),
            })
            .collect()
    }

    const ALL: LogStart = LogStart::At(LogCursor {
        stdout: 0,
        stderr: 0,
    });

    #[test]
    fn both_streams_come_merged_in_the_order_written() {
        let rt = runtime();
        rt.push_log_at("t", Stream::Stdout, b"one\n", 10);
        rt.push_log_at("t", Stream::Stderr, b"oops\n", 20);
        rt.push_log_at("t", Stream::Stdout, b"two\nthr", 30);
        let chunk = read(&rt, &fetch(ALL, 1000));
        assert_eq!(texts(&chunk), ["one", "E:oops", "two"]);
        assert_eq!(chunk.lines[1].time_ns, Some(20));
        // The unfinished line waits for its newline.
        assert_eq!(
            chunk.next,
            LogCursor {
                stdout: 8,
                stderr: 5
            }
        );
        assert!(!chunk.more && !chunk.ended && !chunk.missing);
        rt.push_log_at("t", Stream::Stdout, b"ee\n", 40);
        let chunk = read(&rt, &fetch(LogStart::At(chunk.next), 1000));
        assert_eq!(texts(&chunk), ["three"]);
        assert_eq!(chunk.lines[0].time_ns, Some(40));
    }

    #[test]
    fn reads_and_tails_go_on_across_a_rotation() {
        let rt = runtime();
        for i in 0..10u64 {
            rt.push_log_at("t", Stream::Stdout, format!("line{i}\n").as_bytes(), i);
        }
        // A follower read the first two lines.
        let first = read(&rt, &fetch(ALL, 12));
        assert_eq!(texts(&first), ["line0", "line1"]);
        // Rotation drops everything before the middle of line 3.
        rt.rotate_log("t", Stream::Stdout, 20);
        let next = read(&rt, &fetch(LogStart::At(first.next), 1000));
        assert_eq!(
            texts(&next),
            ["line4", "line5", "line6", "line7", "line8", "line9"]
        );
        assert_eq!(next.next.stdout, 60);
        let all = read(&rt, &fetch(ALL, 1000));
        assert_eq!(texts(&all), texts(&next));
        assert!(all.lines.iter().all(|l| !l.text.contains('\0')));
        assert_eq!(
            texts(&read(&rt, &fetch(LogStart::Tail(2), 1000))),
            ["line8", "line9"]
        );
        // Asked for more lines than are kept: the cut one is left out.
        assert_eq!(
            texts(&read(&rt, &fetch(LogStart::Tail(100), 1000))).len(),
            6
        );
    }

    #[test]
    fn an_ended_task_ends_its_output_with_whatever_it_wrote_last() {
        let rt = runtime();
        rt.push_log_at("t", Stream::Stdout, b"done\nno newline", 10);
        rt.exit("t", Exit::Code(0));
        let chunk = read(&rt, &fetch(ALL, 1000));
        assert_eq!(texts(&chunk), ["done", "no newline"]);
        assert!(chunk.ended && !chunk.more);
        assert_eq!(chunk.next.stdout, 15);
    }

    #[test]
    fn a_budget_cuts_between_lines_and_asks_for_more() {
        let rt = runtime();
        rt.push_log_at("t", Stream::Stdout, b"aaaa\nbbbb\n", 10);
        rt.push_log_at("t", Stream::Stderr, b"cc\n", 20);
        rt.exit("t", Exit::Code(1));
        let first = read(&rt, &fetch(ALL, 7));
        assert_eq!(texts(&first), ["aaaa"]);
        assert!(first.more && !first.ended);
        // stderr's line came later than stdout's unread one: it waits.
        assert_eq!(first.next.stderr, 0);
        let second = read(&rt, &fetch(LogStart::At(first.next), 7));
        assert_eq!(texts(&second), ["bbbb"]);
        let third = read(&rt, &fetch(LogStart::At(second.next), 7));
        assert_eq!(texts(&third), ["E:cc"]);
        assert!(third.ended && !third.more);
    }

    #[test]
    fn a_line_longer_than_the_budget_comes_in_pieces() {
        let rt = runtime();
        rt.push_log_at("t", Stream::Stdout, b"0123456789\n", 10);
        let first = read(&rt, &fetch(ALL, 4));
        assert_eq!(texts(&first), ["0123"]);
        assert!(first.more);
        let rest = read(&rt, &fetch(LogStart::At(first.next), 100));
        assert_eq!(texts(&rest), ["456789"]);
    }

    #[test]
    fn tail_counts_lines_of_both_streams_together() {
        let rt = runtime();
        rt.push_log_at("t", Stream::Stdout, b"1\n2\n", 10);
        rt.push_log_at("t", Stream::Stderr, b"e3\n", 20);
        rt.push_log_at("t", Stream::Stdout, b"4\n5\nunfinished", 30);
        let two = read(&rt, &fetch(LogStart::Tail(2), 1000));
        assert_eq!(texts(&two), ["4", "5"]);
        let three = read(&rt, &fetch(LogStart::Tail(3), 1000));
        assert_eq!(texts(&three), ["E:e3", "4", "5"]);
        let many = read(&rt, &fetch(LogStart::Tail(100), 1000));
        assert_eq!(texts(&many), ["1", "2", "E:e3", "4", "5"]);
        let none = read(&rt, &fetch(LogStart::Tail(0), 1000));
        assert!(none.lines.is_empty());
        // Following on from a tail of 0 starts with the next whole line.
        rt.push_log_at("t", Stream::Stdout, b" now\n", 40);
        let next = read(&rt, &fetch(LogStart::At(none.next), 1000));
        assert_eq!(texts(&next), ["unfinished now"]);
    }

    #[test]
    fn tail_scans_back_across_blocks() {
        let rt = runtime();
        let line = vec![b'x'; 1000];
        for i in 0..200u64 {
            let mut bytes = line.clone();
            bytes.push(b'\n');
            rt.push_log_at("t", Stream::Stdout, &bytes, i);
        }
        rt.push_log_at("t", Stream::Stdout, b"last\n", 500);
        let chunk = read(&rt, &fetch(LogStart::Tail(100), MAX_FETCH_BYTES));
        assert_eq!(chunk.lines.len(), 100);
        assert_eq!(chunk.lines[99].text, "last");
        assert_eq!(chunk.lines[0].time_ns, Some(101));
    }

    #[test]
    fn unknown_tasks_are_missing_not_errors() {
        let rt = runtime();
        let mut f = fetch(ALL, 10);
        f.task_id = "nobody".into();
        let chunk = read(&rt, &f);
        assert!(chunk.missing && chunk.error.is_none() && chunk.lines.is_empty());
        assert_eq!(chunk.fetch_id, 7);
    }

    #[test]
    fn split_keeps_newlines_in_spans() {
        assert_eq!(split_lines(b"a\nbc\nd", false), [(0, 2), (2, 5)]);
        assert_eq!(split_lines(b"a\nbc\nd", true), [(0, 2), (2, 5), (5, 6)]);
        assert_eq!(split_lines(b"", true), []);
        assert_eq!(text_of(b"x\n"), "x");
        assert_eq!(text_of(&[0xff, b'\n']), "\u{fffd}");
    }
}
