//! `service ps` and `node ps`: Docker's task rows (`ID`, `Name`, `Image`,
//! `Node`, `DesiredState`, `CurrentState`, `Error`, `Ports`, plus shoal's
//! `Pid`, `Addresses`, `Command`...), newest task of each slot first with
//! its history under it (` \_ web.1` in tables), states with their age
//! (`Running 5 seconds ago`), errors quoted, and Docker's task filters.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use shoal_control::api::TaskView;
use shoal_control::engine::filter::{self, Filters, TaskContext};
use shoal_control::engine::Task;
use shoal_control::objects::TaskState;

use super::super::format::{self, Listing, Row};

/// How long an error may be in the table before it is cut (Docker's 30).
const ERROR_WIDTH: usize = 30;

/// `service ps` / `node ps`. Docker's default table has an `IMAGE` column
/// after `NAME`; shoal's tasks run commands, so it is left out (the field
/// exists).
pub const TASKS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Image", "IMAGE"),
        ("Node", "NODE"),
        ("DesiredState", "DESIRED STATE"),
        ("CurrentState", "CURRENT STATE"),
        ("Error", "ERROR"),
        ("Ports", "PORTS"),
    ],
    row_type: "*task.taskContext",
};

/// What the `label` and `_up-to-date` filters need of a task's service.
#[derive(Clone, Debug, Default)]
pub struct ServiceFacts {
    pub labels: BTreeMap<String, String>,
    /// The service's spec version: tasks made from it are up to date.
    pub version: u64,
}

/// How `service ps` / `node ps` print.
#[derive(Debug, Default)]
pub struct TaskListOptions<'a> {
    pub quiet: bool,
    pub no_trunc: bool,
    pub format: Option<&'a str>,
    /// Docker's task filters, with `node` and `service` values resolved to
    /// ids.
    pub filters: Filters,
}

/// Whether `task` passes the filters; `services` by service id.
fn kept(task: &TaskView, filters: &Filters, services: &BTreeMap<String, ServiceFacts>) -> bool {
    if filters.is_empty() {
        return true;
    }
    let facts = services.get(&task.service_id);
    let service_name = task
        .name
        .split_once('.')
        .map_or(task.name.as_str(), |(s, _)| s);
    let context = TaskContext {
        service_name,
        service_labels: facts.map(|f| &f.labels),
        up_to_date: facts.is_some_and(|f| f.version == task.spec_version),
    };
    filter::task_matches(filters, &Task::from(task), &context)
}

/// The task table (or ids, or rows through `--format`) as of `now_ms`;
/// `services` (by id) feed the `label` and `_up-to-date` filters.
pub fn list(
    tasks: &[TaskView],
    options: &TaskListOptions,
    services: &BTreeMap<String, ServiceFacts>,
    now_ms: u64,
) -> anyhow::Result<String> {
    filter::check_tasks(&options.filters)?;
    let mut tasks: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| kept(t, &options.filters, services))
        .collect();
    // Grouped by service and slot (or node), newest first in each group.
    tasks.sort_by_key(|t| (group(t), Reverse(t.created_at_ms), t.id.as_str()));
    // `-q` prints whole ids, as Docker's.
    let no_trunc = options.no_trunc || options.quiet;
    let format = format::resolve(&TASKS, options.format, options.quiet);
    let indent = format::is_table(format);
    let mut rows = Vec::new();
    let mut previous = None;
    for t in &tasks {
        let history = previous == Some(group(t));
        previous = Some(group(t));
        rows.push(row(t, history && indent, no_trunc, now_ms));
    }
    Ok(format::list(&TASKS, format, &rows)?)
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
fn row(task: &TaskView, history: bool, no_trunc: bool, now_ms: u64) -> Row {
    let mut fields = serde_json::to_value(task).unwrap_or_else(|_| json!({}));
    let id = if no_trunc {
        task.id.clone()
    } else {
        task.id.chars().take(super::SHORT_ID).collect()
    };
    let name = if history {
        format!(" \\_ {}", task.name)
    } else {
        task.name.clone()
    };
    let shown = json!({
        "ID": id,
        "Name": name,
        "Image": shown_image(&task.image, no_trunc),
        "Node": task.node,
        "DesiredState": capitalised(task.desired_state),
        "CurrentState": current_state(task.current_state, task.since_ms, now_ms),
        "Error": error(task, no_trunc),
        "Ports": shoal_control::api::ports_column(&task.host_ports),
    });
    if let (Some(fields), Value::Object(shown)) = (fields.as_object_mut(), shown) {
        fields.extend(shown);
    }
    Row::new(fields)
}

/// Docker's ERROR column: the error in double quotes, cut to 30 characters
/// (ending in `…`) unless `--no-trunc`.
fn error(task: &TaskView, no_trunc: bool) -> String {
    match task.error.as_deref() {
        None | Some("") => String::new(),
        Some(e) if no_trunc || e.chars().count() <= ERROR_WIDTH => format!("\"{e}\""),
        Some(e) => {
            let kept: String = e.chars().take(ERROR_WIDTH - 1).collect();
            format!("\"{kept}…\"")
        }
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
pub fn human_duration(ms: u64) -> String {
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

/// Docker's IMAGE column: the reference without its pinned digest,
/// unless `--no-trunc`.
fn shown_image(image: &str, no_trunc: bool) -> String {
    if no_trunc {
        return image.to_string();
    }
    image
        .split_once('@')
        .map_or(image, |(name, _)| name)
        .to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn task(name: &str, slot: u64, desired: TaskState, state: TaskState) -> TaskView {
        TaskView {
            up_to_date: false,
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
            image: String::new(),
            host_ports: Vec::new(),
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
        let none = BTreeMap::new();
        let out = list(&tasks, &TaskListOptions::default(), &none, 6_000).unwrap();
        assert_eq!(
            out,
            "ID             NAME        NODE      DESIRED STATE   CURRENT STATE          ERROR                              PORTS\n\
             bbbbbbbbbbbb   web.1       host-1    Running         Running                                                   \n\
             aaaaaaaaaaaa    \\_ web.1   host-1    Shutdown        Failed 5 seconds ago   \"exit status 1: the command fa…\"   \n\
             cccccccccccc   web.2                 Running         Pending                                                   \n"
        );
        let options = TaskListOptions {
            quiet: true,
            filters: Filters::parse(&["desired-state=running"]).unwrap(),
            ..TaskListOptions::default()
        };
        assert_eq!(
            list(&tasks, &options, &none, 6_000).unwrap(),
            "bbbbbbbbbbbbbbbbbbbbbbbb1\nccccccccccccccccccccccccc\n",
            "-q prints whole ids, as Docker's"
        );
        // Only tables indent history.
        let options = TaskListOptions {
            format: Some("{{.Name}}"),
            ..TaskListOptions::default()
        };
        assert_eq!(
            list(&tasks, &options, &none, 6_000).unwrap(),
            "web.1\nweb.1\nweb.2\n"
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
            list(&[t.clone()], &options, &BTreeMap::new(), 0).unwrap(),
            "web.3 Rejected \"network `x` not found\"\n"
        );
        let options = TaskListOptions {
            format: Some("json"),
            ..TaskListOptions::default()
        };
        let row: Value =
            serde_json::from_str(list(&[t], &options, &BTreeMap::new(), 0).unwrap().trim())
                .unwrap();
        assert_eq!(row["DesiredState"], "Running");
        assert_eq!(row["Node"], "host-1");
    }

    #[test]
    fn filters_are_dockers() {
        let a = task("web.1", 1, TaskState::Running, TaskState::Running);
        let mut b = task("web.2", 2, TaskState::Shutdown, TaskState::Shutdown);
        b.node = "host-2".into();
        b.node_id = Some("node2id".into());
        b.spec_version = 2;
        let services = BTreeMap::from([(
            "svc".to_string(),
            ServiceFacts {
                labels: BTreeMap::from([("tier".to_string(), "front".to_string())]),
                version: 2,
            },
        )]);
        let f = |s: &[&str]| Filters::parse(s).unwrap();
        assert!(kept(&a, &f(&["desired-state=running"]), &services));
        assert!(!kept(&b, &f(&["desired-state=running"]), &services));
        assert!(kept(&b, &f(&["node=node1id", "node=node2id"]), &services));
        assert!(!kept(
            &b,
            &f(&["node=node2id", "desired-state=running"]),
            &services
        ));
        assert!(kept(&b, &f(&["name=web.2", "id=web"]), &services));
        assert!(kept(&b, &f(&["label=tier=front"]), &services));
        assert!(!kept(&a, &f(&["label=tier=back"]), &services));
        assert!(kept(&b, &f(&["_up-to-date=true"]), &services));
        assert!(!kept(&a, &f(&["_up-to-date=true"]), &services));
        let options = TaskListOptions {
            filters: f(&["state=running"]),
            ..TaskListOptions::default()
        };
        assert_eq!(
            list(&[a], &options, &services, 0).unwrap_err().to_string(),
            "Invalid filter 'state'"
        );
    }
}
