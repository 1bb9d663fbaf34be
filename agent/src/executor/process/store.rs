//! What the process runtime keeps on disk per task, so a restarted agent can
//! adopt the tasks it left running: a small JSON record (pid, the process's
//! start time so a recycled pid is never mistaken for the task, the exit once
//! known), and the reading of `/proc/PID/stat` that identifies a process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::executor::Exit;

/// The record file's name inside a task's directory.
pub(crate) const RECORD_FILE: &str = "task.json";

/// A task's process as the runtime remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub task_id: String,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot.
    pub start_time: u64,
    pub exit: Option<StoredExit>,
}

impl Record {
    /// The process this record names.
    pub fn identity(&self) -> Identity {
        Identity {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// A process told apart from any later one that reuses its pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start_time: u64,
}

/// [`Exit`] as written in the record: `{"code":3}`, `{"signal":9}` or
/// `"unknown"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoredExit {
    Code(i32),
    Signal(i32),
    Unknown,
    /// Killed by the OOM killer (the container runtime tells it apart).
    Oom,
}

impl From<Exit> for StoredExit {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Code(c) => StoredExit::Code(c),
            Exit::Signal(s) => StoredExit::Signal(s),
            Exit::Unknown => StoredExit::Unknown,
            Exit::OomKilled => StoredExit::Oom,
        }
    }
}

impl From<StoredExit> for Exit {
    fn from(exit: StoredExit) -> Self {
        match exit {
            StoredExit::Code(c) => Exit::Code(c),
            StoredExit::Signal(s) => Exit::Signal(s),
            StoredExit::Unknown => Exit::Unknown,
            StoredExit::Oom => Exit::OomKilled,
        }
    }
}

/// The record's path in a task directory.
pub(crate) fn record_path(task_dir: &Path) -> PathBuf {
    task_dir.join(RECORD_FILE)
}

/// Reads a task's record; `Ok(None)` when it has none.
pub(crate) fn load(task_dir: &Path) -> io::Result<Option<Record>> {
    let text = match fs::read(record_path(task_dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes a task's record atomically (a temporary file renamed over it).
/// Never creates the task directory: once `remove` has deleted it, a late
/// write fails with `NotFound` instead of bringing it back.
pub(crate) fn save(task_dir: &Path, record: &Record) -> io::Result<()> {
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    let tmp = task_dir.join(format!("{RECORD_FILE}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, record_path(task_dir))
}

/// The fields of `/proc/PID/stat` the runtime needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead)...
    pub state: char,
    /// Field 22.
    pub start_time: u64,
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) sits in
/// parentheses and may itself hold spaces and parentheses, so the fields
/// after it are counted from the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let after_comm = &line[line.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was taken; field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// The stat of a live pid, `None` when there is no such process.
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line)
}

/// True while the process `identity` names still runs: its pid exists,
/// started at the recorded time, and is not a zombie.
pub(crate) fn is_alive(identity: Identity) -> bool {
    match proc_stat(identity.pid) {
        Some(stat) => stat.start_time == identity.start_time && !matches!(stat.state, 'Z' | 'X'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a real line, from a process whose comm is `a) (b c`.
    const TRICKY: &str = "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
        1 2 0 0 20 0 1 0 987654 2244608 128 18446744073709551615 1 1 0 0 0 0 0 \
        0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn start_time_is_field_22_even_when_comm_holds_spaces_and_parens() {
        let stat = parse_stat(TRICKY).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                state: 'S',
                start_time: 987654
            }
        );
    }

    #[test]
    fn plain_stat_line_parses() {
        let line = "1 (sleep) Z 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'Z');
        assert_eq!(stat.start_time, 55);
    }

    #[test]
    fn truncated_or_garbled_stat_is_rejected() {
        assert_eq!(parse_stat("12 (sh) S 1 2 3"), None);
        assert_eq!(parse_stat("no parens at all"), None);
        let bad = "1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 0";
        assert_eq!(parse_stat(bad), None);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let stat = proc_stat(pid).expect("own stat");
        let me = Identity {
            pid,
            start_time: stat.start_time,
        };
        assert!(is_alive(me));
        assert!(!is_alive(Identity {
            start_time: stat.start_time + 1,
            ..me
        }));
    }

    #[test]
    fn record_round_trips_through_json() {
        for exit in [
            None,
            Some(StoredExit::Code(3)),
            Some(StoredExit::Signal(9)),
            Some(StoredExit::Unknown),
        ] {
            let record = Record {
                task_id: "t1".into(),
                pid: 77,
                start_time: 1234,
                exit,
            };
            let text = serde_json::to_string(&record).expect("serialises");
            let back: Record = serde_json::from_str(&text).expect("deserialises");
            assert_eq!(back, record);
        }
    }

    #[test]
    fn record_json_is_readable() {
        let record = Record {
            task_id: "t1".into(),
            pid: 77,
            start_time: 1234,
            exit: Some(StoredExit::Signal(9)),
        };
        let text = serde_json::to_string(&record).expect("serialises");
        assert_eq!(
            text,
            r#"{"task_id":"t1","pid":77,"start_time":1234,"exit":{"signal":9}}"#
        );
        let unknown: StoredExit = serde_json::from_str(r#""unknown""#).expect("parses");
        assert_eq!(Exit::from(unknown), Exit::Unknown);
    }

    #[test]
    fn save_then_load_and_no_resurrection_of_a_deleted_dir() {
        let dir = std::env::temp_dir().join(format!("shoal-store-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(load(&dir).expect("empty dir reads"), None);
        let record = Record {
            task_id: "t".into(),
            pid: 1,
            start_time: 2,
            exit: None,
        };
        save(&dir, &record).expect("saves");
        assert_eq!(load(&dir).expect("loads"), Some(record.clone()));
        fs::remove_dir_all(&dir).expect("cleanup");
        assert!(save(&dir, &record).is_err());
        assert!(!dir.exists());
    }
}
