//! Payloads of `service logs`. The CLI asks the leader for the output of a
//! service's tasks ([`LogQuery`]); the leader asks each task's node in its
//! heartbeat answer ([`LogFetch`]) and the node answers in its next heartbeat
//! ([`LogChunk`]), since workers have no listener of their own. Positions are
//! byte offsets into each task's stdout and stderr ([`LogCursor`]), so a
//! reader that follows asks again from where its last answer stopped.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Which output of a task a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub const BOTH: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];
}

/// Where a reader is in one task's output: the next byte of each stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub stdout: u64,
    pub stderr: u64,
}

impl LogCursor {
    pub fn get(&self, stream: LogStream) -> u64 {
        match stream {
            LogStream::Stdout => self.stdout,
            LogStream::Stderr => self.stderr,
        }
    }

    pub fn set(&mut self, stream: LogStream, offset: u64) {
        match stream {
            LogStream::Stdout => self.stdout = offset,
            LogStream::Stderr => self.stderr = offset,
        }
    }
}

/// Where a node starts reading a task's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStart {
    /// From these offsets.
    At(LogCursor),
    /// The last N lines of stdout and stderr together (`--tail N`).
    Tail(u64),
}

/// One line of a task's output, without its newline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: LogStream,
    /// When the node saw the line written, in Unix nanoseconds (within the
    /// runtime's sampling period); `None` when it does not know yet.
    #[serde(default)]
    pub time_ns: Option<u64>,
    /// The line's bytes, invalid UTF-8 replaced.
    pub text: String,
}

impl LogLine {
    /// Docker's `--timestamps` form: RFC 3339 in UTC with nine fraction
    /// digits, so columns line up (`2024-05-01T10:00:00.123456789Z`).
    pub fn timestamp(&self) -> String {
        rfc3339_nanos(self.time_ns.unwrap_or(0))
    }
}

/// `unix_ns` as `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
pub fn rfc3339_nanos(unix_ns: u64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns));
    match time {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        ),
        Err(_) => unix_ns.to_string(),
    }
}

impl Default for LogStart {
    /// From the beginning.
    fn default() -> Self {
        LogStart::At(LogCursor::default())
    }
}

/// `service logs SERVICE|TASK`, asked of the leader (which alone hears the
/// nodes' heartbeats). Answered with [`super::ApiResponse::Logs`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// A service (id, name or unique id prefix) or a task (id or unique id
    /// prefix).
    pub target: String,
    /// Where to read each task the reader knows: on from where its last
    /// answer stopped (or still `--tail N` after a failed first read).
    #[serde(default)]
    pub starts: BTreeMap<String, LogStart>,
    /// Where to read the tasks not in `starts`: `--tail N` or everything on
    /// a first request; the beginning afterwards (tasks started since).
    #[serde(default)]
    pub others: LogStart,
    /// Tasks the reader is done with (ended, everything read): not asked.
    #[serde(default)]
    pub done: BTreeSet<String>,
}

/// What came of reading one task's output for a [`LogQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogs {
    pub task_id: String,
    /// `web.2` (or `web.NODE_ID` for a global task), as `service ps` names it.
    pub name: String,
    /// The replica number; 0 for a global task.
    #[serde(default)]
    pub slot: u64,
    pub node_id: String,
    /// The hostname of the task's node.
    pub node: String,
    /// Both streams, in the order they were written.
    pub lines: Vec<LogLine>,
    /// Where to ask from next time.
    pub next: LogCursor,
    /// More output was there than fit in this answer: ask again at once.
    #[serde(default)]
    pub more: bool,
    /// Nothing more will come: the task has ended and everything was read
    /// (or its node no longer keeps it).
    #[serde(default)]
    pub ended: bool,
    /// Why the task's output could not be read this time (its node is down,
    /// or did not answer in time); ask again with the same start.
    #[serde(default)]
    pub error: Option<String>,
}

/// The leader's request to a node, carried in a heartbeat answer: read one
/// task's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFetch {
    /// Echoed in the answer.
    pub id: u64,
    pub task_id: String,
    pub start: LogStart,
    /// At most this many bytes of output in the answer.
    pub max_bytes: u64,
}

/// A node's answer to a [`LogFetch`], carried in its next heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub fetch_id: u64,
    pub task_id: String,
    /// Complete lines of both streams, in the order they were written.
    pub lines: Vec<LogLine>,
    /// Where to read on from.
    pub next: LogCursor,
    /// More output was there than fit in `max_bytes`.
    #[serde(default)]
    pub more: bool,
    /// The task's process has ended and `next` is the end of its output.
    #[serde(default)]
    pub ended: bool,
    /// The node holds no such task: not started there yet, or forgotten.
    #[serde(default)]
    pub missing: bool,
    /// Why the output could not be read.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nine_fraction_digits() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_714_557_600_123_456_789),
            "2024-05-01T10:00:00.123456789Z"
        );
        let line = LogLine {
            stream: LogStream::Stdout,
            time_ns: Some(1_000_000_007),
            text: "x".into(),
        };
        assert_eq!(line.timestamp(), "1970-01-01T00:00:01.000000007Z");
    }

    #[test]
    fn cursors_address_each_stream() {
        let mut c = LogCursor::default();
        c.set(LogStream::Stderr, 7);
        c.set(LogStream::Stdout, 3);
        assert_eq!((c.get(LogStream::Stdout), c.get(LogStream::Stderr)), (3, 7));
    }

    #[test]
    fn fetches_and_chunks_travel_as_json() {
        let fetch = LogFetch {
            id: 9,
            task_id: "t1".into(),
            start: LogStart::Tail(2),
            max_bytes: 1024,
        };
        let json = serde_json::to_string(&fetch).unwrap();
        assert_eq!(
            json,
            r#"{"id":9,"task_id":"t1","start":{"tail":2},"max_bytes":1024}"#
        );
        assert_eq!(serde_json::from_str::<LogFetch>(&json).unwrap(), fetch);
        // A chunk from a node that sends only what it has.
        let chunk: LogChunk = serde_json::from_str(
            r#"{"fetch_id":9,"task_id":"t1","lines":[],"next":{"stdout":4,"stderr":0}}"#,
        )
        .unwrap();
        assert!(!chunk.more && !chunk.ended && !chunk.missing && chunk.error.is_none());
        assert_eq!(chunk.next.stdout, 4);
    }
}
