//! `shoal service logs SERVICE|TASK`: the tasks' output, read by the leader
//! from whichever node runs each task and printed as Docker prints it,
//! `web.1.<id>@<node>    | line`, stdout's lines on stdout and stderr's on
//! stderr. `--follow` asks again from where each answer stopped, about
//! twice a second, until interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use shoal_control::api::{ApiRequest, ApiResponse, LogQuery, LogStart, LogStream, TaskLogs};

use super::api;
use super::rows::short_id;

/// A follower asks at most this often (the leader's wait for the nodes'
/// next heartbeat usually sets the pace).
const FOLLOW_PERIOD: Duration = Duration::from_millis(500);
/// How long a follower waits after a failed request.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Requests of one read without `--follow`: each makes progress, this
/// bounds the loop whatever the nodes answer.
const MAX_READS: usize = 10_000;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A service (name, id or unique id prefix) or a task (id or unique id
    /// prefix).
    pub target: String,
    /// Keep printing new output until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end of each task's output, or all.
    #[arg(short = 'n', long, default_value = "all", value_parser = parse_tail)]
    pub tail: Tail,
    /// Prefix each line with when it was written (RFC 3339, nanoseconds).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Leave the task ids out of the prefixes.
    #[arg(long)]
    pub no_task_ids: bool,
    /// Full task ids in the prefixes.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `--tail`: a number of lines, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail(Option<u64>);

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text == "all" {
        return Ok(Tail(None));
    }
    text.parse()
        .map(|n| Tail(Some(n)))
        .map_err(|_| format!("invalid --tail `{text}`: use a number of lines or `all`"))
}

/// How lines are printed.
#[derive(Clone, Copy, Debug, Default)]
struct Style {
    timestamps: bool,
    no_task_ids: bool,
    no_trunc: bool,
}

/// One line to print, and where.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    stream: LogStream,
    text: String,
}

/// What a reader knows between requests.
#[derive(Debug)]
struct Reader {
    target: String,
    tail: Tail,
    style: Style,
    /// Where to ask each known task from.
    starts: BTreeMap<String, LogStart>,
    done: BTreeSet<String>,
    /// Tasks whose last answer said more is waiting.
    behind: BTreeSet<String>,
    /// The last error printed per task, so a follower repeats none.
    errors: BTreeMap<String, String>,
    /// The widest slot number seen, for Docker's padding.
    slot_width: usize,
    first: bool,
}

impl Reader {
    fn new(args: &LogsArgs) -> Reader {
        Reader {
            target: args.target.clone(),
            tail: args.tail,
            style: Style {
                timestamps: args.timestamps,
                no_task_ids: args.no_task_ids,
                no_trunc: args.no_trunc,
            },
            starts: BTreeMap::new(),
            done: BTreeSet::new(),
            behind: BTreeSet::new(),
            errors: BTreeMap::new(),
            slot_width: 1,
            first: true,
        }
    }

    fn query(&self) -> LogQuery {
        let others = match (self.first, self.tail) {
            (true, Tail(Some(n))) => LogStart::Tail(n),
            _ => LogStart::default(),
        };
        LogQuery {
            target: self.target.clone(),
            starts: self.starts.clone(),
            others,
            done: self.done.clone(),
        }
    }

    /// The query of a read without `--follow` after its first answer: only
    /// the tasks that have more.
    fn query_behind(&self) -> LogQuery {
        let mut query = self.query();
        query.done.extend(
            self.starts
                .keys()
                .filter(|id| !self.behind.contains(*id))
                .cloned(),
        );
        query
    }

    /// Takes an answer: moves every cursor on and returns the lines to
    /// print, all tasks merged in the order written, and the new errors.
    fn take(&mut self, tasks: Vec<TaskLogs>) -> (Vec<Printed>, Vec<String>) {
        let first = std::mem::replace(&mut self.first, false);
        self.behind.clear();
        for task in &tasks {
            self.slot_width = self.slot_width.max(digits(task.slot));
        }
        let mut lines = Vec::new();
        let mut errors = Vec::new();
        for task in tasks {
            let prefix = self.prefix(&task);
            if let Some(error) = task.error {
                if self.errors.get(&task.task_id) != Some(&error) {
                    errors.push(format!("{prefix}: cannot read its logs: {error}"));
                    self.errors.insert(task.task_id.clone(), error);
                }
                // Ask again as before: after a failed first read, with the
                // tail it was asked with.
                if first && !self.starts.contains_key(&task.task_id) {
                    let again = match self.tail {
                        Tail(Some(n)) => LogStart::Tail(n),
                        Tail(None) => LogStart::default(),
                    };
                    self.starts.insert(task.task_id, again);
                }
                continue;
            }
            self.errors.remove(&task.task_id);
            for line in task.lines {
                let mut text = String::new();
                if self.style.timestamps {
                    text.push_str(&line.timestamp());
                    text.push(' ');
                }
                text.push_str(&prefix);
                text.push_str("    | ");
                text.push_str(&line.text);
                lines.push((line.time_ns.unwrap_or(u64::MAX), line.stream, text));
            }
            if task.more {
                self.behind.insert(task.task_id.clone());
            }
            if task.ended {
                self.done.insert(task.task_id.clone());
            }
            self.starts.insert(task.task_id, LogStart::At(task.next));
        }
        lines.sort_by_key(|(time, _, _)| *time);
        let printed = lines
            .into_iter()
            .map(|(_, stream, text)| Printed { stream, text })
            .collect();
        (printed, errors)
    }

    /// `web.1.<id>@<node>`, with Docker's padding after narrower slots.
    fn prefix(&self, task: &TaskLogs) -> String {
        let mut name = task.name.clone();
        if !self.style.no_task_ids {
            name.push('.');
            if self.style.no_trunc {
                name.push_str(&task.task_id);
            } else {
                name.push_str(&short_id(&task.task_id));
            }
        }
        let pad = if task.slot > 0 {
            self.slot_width.saturating_sub(digits(task.slot))
        } else {
            0
        };
        format!("{name}@{}{}", task.node, " ".repeat(pad))
    }
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// Prints lines; false once stdout is closed (`| head`).
fn print(lines: &[Printed]) -> bool {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in lines {
        let written = match line.stream {
            LogStream::Stdout => writeln!(out, "{}", line.text),
            LogStream::Stderr => writeln!(err, "{}", line.text),
        };
        if written.is_err() {
            return false;
        }
    }
    out.flush().is_ok() && err.flush().is_ok()
}

async fn ask(socket: &Path, query: LogQuery) -> anyhow::Result<Vec<TaskLogs>> {
    match api(socket, ApiRequest::ServiceLogs { query }).await? {
        ApiResponse::Logs { tasks } => Ok(tasks),
        other => bail!("unexpected answer: {other:?}"),
    }
}

pub async fn run(socket: &Path, args: &LogsArgs) -> anyhow::Result<()> {
    let mut reader = Reader::new(args);
    if args.follow {
        return tokio::select! {
            result = follow(socket, &mut reader) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
    }
    let mut failed = Vec::new();
    let mut query = reader.query();
    for _ in 0..MAX_READS {
        let (lines, errors) = reader.take(ask(socket, query).await?);
        failed.extend(errors);
        if !print(&lines) {
            return Ok(());
        }
        if reader.behind.is_empty() {
            break;
        }
        query = reader.query_behind();
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// Reads on until interrupted; only the first request's error (say, no
/// such service) ends it.
async fn follow(socket: &Path, reader: &mut Reader) -> anyhow::Result<()> {
    let mut answered = false;
    loop {
        let asked = tokio::time::Instant::now();
        match ask(socket, reader.query()).await {
            Ok(tasks) => {
                answered = true;
                let (lines, errors) = reader.take(tasks);
                for error in errors {
                    eprintln!("{error}");
                }
                if !print(&lines) {
                    return Ok(());
                }
                // Behind: ask again at once.
                if reader.behind.is_empty() {
                    tokio::time::sleep_until(asked + FOLLOW_PERIOD).await;
                }
            }
            Err(e) if !answered => return Err(e),
            Err(e) => {
                eprintln!("service logs: {e:#}; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::api::{LogCursor, LogLine};

    fn args(extra: &[&str]) -> LogsArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            logs: LogsArgs,
        }
        let mut argv = vec!["logs"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").logs
    }

    fn line(stream: LogStream, time_ns: u64, text: &str) -> LogLine {
        LogLine {
            stream,
            time_ns: Some(time_ns),
            text: text.into(),
        }
    }

    fn task(id: &str, slot: u64, node: &str, lines: Vec<LogLine>, next: u64) -> TaskLogs {
        TaskLogs {
            task_id: id.into(),
            name: format!("web.{slot}"),
            slot,
            node_id: format!("id-{node}"),
            node: node.into(),
            lines,
            next: LogCursor {
                stdout: next,
                stderr: 0,
            },
            more: false,
            ended: false,
            error: None,
        }
    }

    const OUT: LogStream = LogStream::Stdout;
    const ERR: LogStream = LogStream::Stderr;

    #[test]
    fn lines_carry_dockers_prefix_and_merge_across_tasks_by_time() {
        let mut reader = Reader::new(&args(&["web"]));
        let (printed, errors) = reader.take(vec![
            task(
                "aaaaaaaaaaaaaaaaaaaa",
                1,
                "h2",
                vec![line(OUT, 10, "hello"), line(ERR, 30, "oops")],
                6,
            ),
            task(
                "bbbbbbbbbbbbbbbbbbbb",
                2,
                "h3",
                vec![line(OUT, 20, "hi")],
                3,
            ),
        ]);
        assert!(errors.is_empty());
        let texts: Vec<(LogStream, &str)> = printed
            .iter()
            .map(|p| (p.stream, p.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (OUT, "web.1.aaaaaaaaaaaa@h2    | hello"),
                (OUT, "web.2.bbbbbbbbbbbb@h3    | hi"),
                (ERR, "web.1.aaaaaaaaaaaa@h2    | oops"),
            ]
        );
        // The next request goes on from where this one stopped.
        let next = reader.query();
        assert_eq!(
            next.starts.get("aaaaaaaaaaaaaaaaaaaa"),
            Some(&LogStart::At(LogCursor {
                stdout: 6,
                stderr: 0
            }))
        );
        assert_eq!(next.others, LogStart::default());
    }

    #[test]
    fn prefixes_follow_the_flags_and_pad_narrow_slots() {
        let mut reader = Reader::new(&args(&["--no-task-ids", "-t", "web"]));
        let (printed, _) = reader.take(vec![
            task("a1", 9, "h2", vec![line(OUT, 1_000_000_000, "x")], 1),
            task("a2", 10, "h3", vec![], 0),
        ]);
        assert_eq!(
            printed[0].text,
            "1970-01-01T00:00:01.000000000Z web.9@h2     | x"
        );
        let full = Reader::new(&args(&["--no-trunc", "web"]));
        let prefix = full.prefix(&task("0123456789abcdef0123", 1, "h2", vec![], 0));
        assert_eq!(prefix, "web.1.0123456789abcdef0123@h2");
    }

    #[test]
    fn tail_applies_to_the_first_request_only() {
        let mut reader = Reader::new(&args(&["--tail", "2", "-f", "web"]));
        assert_eq!(reader.query().others, LogStart::Tail(2));
        // A task whose first read failed is asked with the tail again.
        let mut failed = task("t1", 1, "h2", vec![], 0);
        failed.error = Some("node h2 is down".into());
        let (_, errors) = reader.take(vec![failed.clone(), task("t2", 2, "h3", vec![], 9)]);
        assert_eq!(
            errors,
            ["web.1.t1@h2: cannot read its logs: node h2 is down"]
        );
        let query = reader.query();
        assert_eq!(query.others, LogStart::default());
        assert_eq!(query.starts.get("t1"), Some(&LogStart::Tail(2)));
        // The same error is not printed twice.
        let (_, errors) = reader.take(vec![failed]);
        assert!(errors.is_empty());
        assert!(parse_tail("-1").is_err());
        assert_eq!(parse_tail("all"), Ok(Tail(None)));
    }

    #[test]
    fn ended_tasks_are_done_and_only_tasks_behind_are_asked_again() {
        let mut reader = Reader::new(&args(&["web"]));
        let mut ended = task("t1", 1, "h2", vec![], 4);
        ended.ended = true;
        let mut behind = task("t2", 2, "h3", vec![], 7);
        behind.more = true;
        reader.take(vec![ended, behind, task("t3", 3, "h4", vec![], 1)]);
        assert!(reader.query().done.contains("t1"));
        let again = reader.query_behind();
        assert_eq!(
            again.done.iter().map(String::as_str).collect::<Vec<_>>(),
            ["t1", "t3"]
        );
    }
}
