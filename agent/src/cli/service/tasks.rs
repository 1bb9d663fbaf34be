//! `service ps` and `node ps`: Docker's task table, newest task of each slot
//! first with its history under it (` \_ web.1`), states with their age
//! (`Running 5 seconds ago`), errors quoted.

use std::cmp::Reverse;
use std::str::FromStr;

use serde_json::{json, Value};
use shoal_control::api::TaskView;
use shoal_control::objects::TaskState;

use super::super::format::{self, TemplateError};
use super::{ellipsis, short_id};

/// How long an error may be in the table before it is cut (Docker's 30).
const ERROR_WIDTH: usize = 30;

/// One `--filter KEY=VALUE` of `service ps`. Filters with the same key
/// match any of their values; different keys must all match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskFilter {
    /// `desired-state=running|shutdown`.
    DesiredRunning(bool),
    /// `node=HOSTNAME|ID`.
    Node(String),
    /// `name=PREFIX`.
    Name(String),
    /// `id=PREFIX`.
    Id(String),
}

impl FromStr for TaskFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "invalid filter `{text}`: use desired-state=running|shutdown, node=NODE, name=NAME or id=ID"
            )
        };
        let (key, value) = text.split_once('=').ok_or_else(usage)?;
        match (key, value) {
            ("desired-state", "running") => Ok(TaskFilter::DesiredRunning(true)),
            ("desired-state", "shutdown") => Ok(TaskFilter::DesiredRunning(false)),
            ("node", v) if !v.is_empty() => Ok(TaskFilter::Node(v.into())),
            ("name", v) if !v.is_empty() => Ok(TaskFilter::Name(v.into())),
            ("id", v) if !v.is_empty() => Ok(TaskFilter::Id(v.into())),
            _ => Err(usage()),
        }
    }
}

impl TaskFilter {
    fn matches(&self, task: &TaskView) -> bool {
        match self {
            TaskFilter::DesiredRunning(running) => {
                (task.desired_state <= TaskState::Running) == *running
            }
            TaskFilter::Node(node) => {
                task.node == *node || task.node_id.as_deref() == Some(node.as_str())
            }
            TaskFilter::Name(prefix) => task.name.starts_with(prefix.as_str()),
            TaskFilter::Id(prefix) => task.id.starts_with(prefix.as_str()),
        }
    }

    fn same_key(&self, other: &TaskFilter) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Whether `task` passes every filter key.
fn kept(task: &TaskView, filters: &[TaskFilter]) -> bool {
    filters.iter().all(|f| {
        filters
            .iter()
            .filter(|g| g.same_key(f))
            .any(|g| g.matches(task))
    })
}

/// How `service ps` / `node ps` print.
#[derive(Debug, Default)]
pub struct TaskListOptions<'a> {
    pub quiet: bool,
    pub no_trunc: bool,
    pub format: Option<&'a str>,
    pub filters: &'a [TaskFilter],
}

/// The task table (or ids, or rows through `--format`) as of `now_ms`.
pub fn list(
    tasks: &[TaskView],
    options: &TaskListOptions,
    now_ms: u64,
) -> Result<String, TemplateError> {
    let mut tasks: Vec<&TaskView> = tasks.iter().filter(|t| kept(t, options.filters)).collect();
    // Grouped by service and slot (or node), newest first in each group.
    tasks.sort_by_key(|t| (group(t), Reverse(t.created_at_ms), t.id.as_str()));
    let id = |t: &TaskView| {
        if options.no_trunc {
            t.id.clone()
        } else {
            short_id(&t.id)
        }
    };
    let mut out = String::new();
    if options.quiet {
        for t in &tasks {
            out.push_str(&id(t));
            out.push('\n');
        }
        return Ok(out);
    }
    if let Some(template) = options.format {
        for t in &tasks {
            let row = row(t, id(t), options.no_trunc, now_ms);
            if template == "json" {
                out.push_str(&row.to_string());
            } else {
                out.push_str(&format::render(template, &row)?);
            }
            out.push('\n');
        }
        return Ok(out);
    }
    let mut rows = Vec::new();
    let mut previous = None;
    for t in &tasks {
        let history = previous == Some(group(t));
        previous = Some(group(t));
        let name = if history {
            format!(" \\_ {}", t.name)
        } else {
            t.name.clone()
        };
        rows.push(vec![
            id(t),
            name,
            t.node.clone(),
            capitalised(t.desired_state),
            current_state(t.current_state, t.since_ms, now_ms),
            error(t, options.no_trunc),
            String::new(),
        ]);
    }
    Ok(format::table(
        &[
            "ID",
            "NAME",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS",
        ],
        &rows,
    ))
}

/// Tasks of one slot (or, for global services, one node) of one service.
fn group(task: &TaskView) -> (&str, u64, &str) {
    let service = task
        .name
        .split_once('.')
        .map_or(task.name.as_str(), |(s, _)| s);
    let node = if task.slot == 0 {
        task.node_id.as_deref().unwrap_or("")
    } else {
        ""
    };
    (service, task.slot, node)
}

/// The fields `--format` sees: Docker's columns as shown, plus every other
/// field of the task (`Pid`, `Addresses`, `ExitCode`, `CreatedAtMs`...).
fn row(task: &TaskView, id: String, no_trunc: bool, now_ms: u64) -> Value {
    let mut row = serde_json::to_value(task).unwrap_or_else(|_| json!({}));
    let shown = json!({
        "ID": id,
        "Name": task.name,
        "Node": task.node,
        "DesiredState": capitalised(task.desired_state),
        "CurrentState": current_state(task.current_state, task.since_ms, now_ms),
        "Error": error(task, no_trunc),
        "Ports": "",
    });
    if let (Some(row), Some(shown)) = (row.as_object_mut(), shown.as_object()) {
        for (k, v) in shown {
            row.insert(k.clone(), v.clone());
        }
    }
    row
}

/// Docker's ERROR column: the error in double quotes, cut unless
/// `--no-trunc`.
fn error(task: &TaskView, no_trunc: bool) -> String {
    match task.error.as_deref() {
        None | Some("") => String::new(),
        Some(e) if no_trunc => format!("\"{e}\""),
        Some(e) => format!("\"{}\"", ellipsis(e, ERROR_WIDTH)),
    }
}

/// `Running`, `Shutdown`.
pub fn capitalised(state: TaskState) -> String {
    let s = state.as_str();
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Docker's CURRENT STATE: `Running 5 seconds ago`, `Failed about a minute
/// ago`; the state alone when its time is unknown.
pub fn current_state(state: TaskState, since_ms: u64, now_ms: u64) -> String {
    if since_ms == 0 {
        return capitalised(state);
    }
    let age = human_duration(now_ms.saturating_sub(since_ms));
    format!("{} {} ago", capitalised(state), age.to_lowercase())
}

/// How Docker says how long ago something happened.
fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let minutes = seconds / 60;
    // Hours are rounded, as Docker does.
    let hours = (ms + 1_800_000) / 3_600_000;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", ms / 3_600_000 / 24 / 365),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn task(name: &str, slot: u64, desired: TaskState, state: TaskState) -> TaskView {
        TaskView {
            id: format!("{name}-{}-{}", desired.as_str(), state.as_str()).replace('.', "x"),
            name: name.into(),
            service_id: "svc".into(),
            slot,
            node_id: Some("node1id".into()),
            node: "host-1".into(),
            desired_state: desired,
            current_state: state,
            since_ms: 1_000,
            message: String::new(),
            error: None,
            exit_code: None,
            pid: None,
            addresses: vec![],
            spec_version: 1,
            command: vec!["sleep".into()],
            created_at_ms: 1_000,
        }
    }

    #[test]
    fn state_age_reads_like_docker() {
        let s = TaskState::Running;
        let now = 10_000_000_000;
        assert_eq!(
            current_state(s, now - 300, now),
            "Running less than a second ago"
        );
        assert_eq!(current_state(s, now - 1_000, now), "Running 1 second ago");
        assert_eq!(current_state(s, now - 5_400, now), "Running 5 seconds ago");
        assert_eq!(
            current_state(s, now - 61_000, now),
            "Running about a minute ago"
        );
        assert_eq!(
            current_state(TaskState::Failed, now - 3 * 60_000, now),
            "Failed 3 minutes ago"
        );
        assert_eq!(
            current_state(s, now - 70 * 60_000, now),
            "Running about an hour ago"
        );
        assert_eq!(
            current_state(TaskState::Shutdown, now - 5 * 3_600_000, now),
            "Shutdown 5 hours ago"
        );
        assert_eq!(human_duration(3 * 86_400_000), "3 days");
        assert_eq!(human_duration(21 * 86_400_000), "3 weeks");
        assert_eq!(human_duration(90 * 86_400_000), "3 months");
        assert_eq!(human_duration(800 * 86_400_000), "2 years");
        assert_eq!(current_state(TaskState::New, 0, now), "New");
        assert_eq!(
            current_state(s, now + 5_000, now),
            "Running less than a second ago",
            "a clock ahead of ours is not negative"
        );
    }

    #[test]
    fn history_sits_under_the_current_task_of_its_slot() {
        let mut old = task("web.1", 1, TaskState::Shutdown, TaskState::Failed);
        old.id = "aaaaaaaaaaaaaaaaaaaaaaaa1".into();
        old.error = Some("exit status 1: the command failed for good".into());
        old.created_at_ms = 1_000;
        let mut new = task("web.1", 1, TaskState::Running, TaskState::Running);
        new.id = "bbbbbbbbbbbbbbbbbbbbbbbb1".into();
        new.created_at_ms = 2_000;
        new.since_ms = 0;
        let mut two = task("web.2", 2, TaskState::Running, TaskState::Pending);
        two.id = "ccccccccccccccccccccccccc".into();
        two.node = String::new();
        two.since_ms = 0;
        let tasks = [old, two, new];
        let out = list(&tasks, &TaskListOptions::default(), 6_000).unwrap();
        assert_eq!(
            out,
            "ID             NAME        NODE     DESIRED STATE   CURRENT STATE          ERROR                              PORTS\n\
             bbbbbbbbbbbb   web.1       host-1   Running         Running\n\
             aaaaaaaaaaaa    \\_ web.1   host-1   Shutdown        Failed 5 seconds ago   \"exit status 1: the command ...\"\n\
             cccccccccccc   web.2                Running         Pending\n"
        );
        let running = [TaskFilter::DesiredRunning(true)];
        let options = TaskListOptions {
            quiet: true,
            no_trunc: true,
            filters: &running,
            ..TaskListOptions::default()
        };
        assert_eq!(
            list(&tasks, &options, 6_000).unwrap(),
            "bbbbbbbbbbbbbbbbbbbbbbbb1\nccccccccccccccccccccccccc\n"
        );
    }

    #[test]
    fn format_rows_use_dockers_field_names() {
        let mut t = task("web.3", 3, TaskState::Running, TaskState::Rejected);
        t.error = Some("network `x` not found".into());
        t.since_ms = 0;
        let options = TaskListOptions {
            format: Some("{{.Name}} {{.CurrentState}} {{.Error}}"),
            no_trunc: true,
            ..TaskListOptions::default()
        };
        assert_eq!(
            list(&[t.clone()], &options, 0).unwrap(),
            "web.3 Rejected \"network `x` not found\"\n"
        );
        let options = TaskListOptions {
            format: Some("json"),
            ..TaskListOptions::default()
        };
        let row: Value = serde_json::from_str(list(&[t], &options, 0).unwrap().trim()).unwrap();
        assert_eq!(row["DesiredState"], "Running");
        assert_eq!(row["Node"], "host-1");
    }

    #[test]
    fn filters_or_within_a_key_and_within_keys() {
        let a = task("web.1", 1, TaskState::Running, TaskState::Running);
        let mut b = task("web.2", 2, TaskState::Shutdown, TaskState::Shutdown);
        b.node = "host-2".into();
        b.node_id = Some("node2id".into());
        let f = |s: &[&str]| -> Vec<TaskFilter> { s.iter().map(|s| s.parse().unwrap()).collect() };
        assert!(kept(&a, &f(&["desired-state=running"])));
        assert!(!kept(&b, &f(&["desired-state=running"])));
        assert!(kept(&b, &f(&["node=host-1", "node=node2id"])));
        assert!(!kept(&b, &f(&["node=host-2", "desired-state=running"])));
        assert!(kept(&b, &f(&["name=web.2", "id=web"])));
        assert_eq!(
            "state=running".parse::<TaskFilter>().unwrap_err(),
            "invalid filter `state=running`: use desired-state=running|shutdown, node=NODE, name=NAME or id=ID"
        );
        assert!("desired-state=paused".parse::<TaskFilter>().is_err());
    }
}
