//! Waiting for a service to converge after `create`, `update`, `scale` and
//! `rollback`, with Docker's progress lines (`1/3: running [====>]`, then
//! `verify: Service converged`). Whether it converged is a pure function of
//! the tasks, tested without an agent; the loop only polls and prints.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use shoal_control::api::{ServiceView, TaskView};
use shoal_control::objects::{ServiceSpec, TaskState, UpdateState, UpdateStatus};

use super::flags::WatchFlags;
use super::rows::short_id;
use super::values::format_duration;
use super::{inspect, tasks_of};

/// How often the tasks are read while waiting.
const POLL: Duration = Duration::from_millis(250);
/// Width of the progress bar, as Docker draws it.
const BAR: usize = 50;

/// What the service must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Tasks wanted: replicas, or eligible nodes of a global service.
    pub desired: u64,
    /// Tasks made from this spec version or a later one are up to date.
    pub min_version: u64,
    pub global: bool,
}

/// Where a service stands against its [`Target`].
#[derive(Debug, PartialEq)]
pub struct Progress {
    /// Slots (nodes, for a global service) with an up-to-date task running.
    pub running: u64,
    /// Every wanted task is up to date and running, one per slot (node),
    /// and there are as many as desired.
    pub converged: bool,
    /// The newest wanted task of each slot (node), in slot order.
    pub slots: Vec<TaskView>,
}

/// A slot of a replicated service, or the node of a global one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SlotKey {
    Slot(u64),
    Node(String),
}

fn slot_key(task: &TaskView, global: bool) -> SlotKey {
    if global {
        SlotKey::Node(task.node_id.clone().unwrap_or_default())
    } else {
        SlotKey::Slot(task.slot)
    }
}

fn wanted(task: &TaskView) -> bool {
    task.desired_state <= TaskState::Running
}

/// Where `tasks` stand against `target`. Tasks the managers no longer want
/// (desired shutdown) are ignored; an out-of-date or unstarted wanted task,
/// a missing or an extra one keeps the service from converging.
pub fn progress(tasks: &[TaskView], target: &Target) -> Progress {
    let wanted: Vec<&TaskView> = tasks.iter().filter(|t| wanted(t)).collect();
    let up = |t: &TaskView| {
        t.spec_version >= target.min_version && t.current_state == TaskState::Running
    };
    let running: BTreeSet<SlotKey> = wanted
        .iter()
        .filter(|t| up(t))
        .map(|t| slot_key(t, target.global))
        .collect();
    let mut newest: BTreeMap<SlotKey, &TaskView> = BTreeMap::new();
    for t in &wanted {
        let entry = newest.entry(slot_key(t, target.global)).or_insert(t);
        if (t.created_at_ms, &t.id) > (entry.created_at_ms, &entry.id) {
            *entry = t;
        }
    }
    // Tasks above the wanted count (a scale down the managers have not
    // acted on yet) are not progress: never `2 out of 1 tasks`.
    let running = (running.len() as u64).min(target.desired);
    let mut slots: Vec<TaskView> = newest.into_values().cloned().collect();
    if !target.global {
        slots.truncate(usize::try_from(target.desired).unwrap_or(usize::MAX));
    }
    Progress {
        running,
        converged: running == target.desired
            && wanted.len() as u64 == target.desired
            && wanted.iter().all(|t| up(t)),
        slots,
    }
}

/// The oldest spec version whose tasks are up to date after a change from
/// `before` to `after`: a change that leaves what tasks run alone (a scale,
/// the update settings) replaces no task, so every task counts, whatever
/// spec version made it (a task made two scales ago runs what the service
/// asks as much as a new one: waiting for the version before this change
/// waited for ever on tasks older than the previous scale).
pub fn min_version(before: &ServiceView, after: &ServiceView, force: bool) -> u64 {
    if !force && same_tasks(&before.spec, &after.spec) {
        0
    } else {
        after.version
    }
}

fn same_tasks(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.task == b.task && a.networks == b.networks && a.ports == b.ports
}

/// What the service's update status says about the wait.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// No update running (or none reported): the tasks decide.
    Settled,
    /// The managers are still replacing tasks.
    InProgress,
    /// The update stopped short; the message says why.
    Failed(String),
}

/// Reads `status` against the one seen before the command (`baseline`):
/// an unchanged final status belongs to an earlier change and is ignored.
/// A rollback the user did not ask for is a failure of the update.
pub fn update_outcome(
    status: Option<&UpdateStatus>,
    baseline: Option<&UpdateStatus>,
    rollback_requested: bool,
) -> UpdateOutcome {
    let Some(status) = status else {
        return UpdateOutcome::Settled;
    };
    if status.state.in_progress() {
        return UpdateOutcome::InProgress;
    }
    if Some(status) == baseline {
        return UpdateOutcome::Settled;
    }
    let why = |what: &str| {
        if status.message.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {}", status.message)
        }
    };
    match status.state {
        UpdateState::Updating | UpdateState::RollbackStarted | UpdateState::Completed => {
            UpdateOutcome::Settled
        }
        UpdateState::Paused => UpdateOutcome::Failed(why("update paused")),
        UpdateState::RollbackPaused => UpdateOutcome::Failed(why("rollback paused")),
        UpdateState::RollbackCompleted if rollback_requested => UpdateOutcome::Settled,
        UpdateState::RollbackCompleted => UpdateOutcome::Failed(why("service rolled back")),
    }
}

/// Docker's progress block: `overall progress: 1 out of 3 tasks`, then a
/// line per slot (`1/3: running   [=====>]`) or per node of a global service
/// (`abcdef123456: running ...`). A task with an error shows the error.
pub fn frame(progress: &Progress, target: &Target) -> Vec<String> {
    let mut lines = vec![format!(
        "overall progress: {} out of {} tasks",
        progress.running, target.desired
    )];
    let labels: Vec<String> = progress
        .slots
        .iter()
        .enumerate()
        .map(|(i, t)| match (target.global, &t.node_id) {
            (true, Some(node)) => short_id(node),
            (true, None) => "unassigned".into(),
            (false, _) => format!("{}/{}", i + 1, target.desired),
        })
        .collect();
    let width = labels.iter().map(String::len).max().unwrap_or(0);
    for (label, t) in labels.iter().zip(&progress.slots) {
        let label = format!("{label}:");
        let body = match t.error.as_deref().filter(|e| !e.is_empty()) {
            Some(error) => error.to_string(),
            None => {
                let mut body = format!("{:<9} {}", t.current_state.as_str(), bar(t.current_state));
                if t.current_state < TaskState::Assigned && !t.message.is_empty() {
                    body.push(' ');
                    body.push_str(&t.message);
                }
                body
            }
        };
        lines.push(
            format!("{label:<w$} {body}", w = width + 1)
                .trim_end()
                .to_string(),
        );
    }
    lines
}

/// `[=====>     ]` by how far a task is on its way to running; nothing
/// for a stopped task.
fn bar(state: TaskState) -> String {
    let step = match state {
        TaskState::New => 1,
        TaskState::Pending => 2,
        TaskState::Assigned => 3,
        TaskState::Preparing | TaskState::Starting => 4,
        TaskState::Running => 5,
        _ => return String::new(),
    };
    let done = BAR * step / 5;
    format!("[{}>{}]", "=".repeat(done), " ".repeat(BAR - done))
}

/// `web.2: failed: exit status 1`: a task's state and why.
fn reason(task: &TaskView) -> String {
    let detail = task
        .error
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| Some(task.message.clone()).filter(|m| !m.is_empty()))
        .or_else(|| task.exit_code.map(|c| format!("exit code {c}")));
    match detail {
        Some(detail) => format!("{}: {}: {detail}", task.name, task.current_state),
        None => format!("{}: {}", task.name, task.current_state),
    }
}

/// Up-to-date tasks that failed, except those in `seen`.
fn failures<'a>(
    tasks: &'a [TaskView],
    target: &Target,
    seen: &HashSet<String>,
) -> Vec<&'a TaskView> {
    tasks
        .iter()
        .filter(|t| {
            t.spec_version >= target.min_version
                && matches!(t.current_state, TaskState::Failed | TaskState::Rejected)
                && !seen.contains(&t.id)
        })
        .collect()
}

/// Why the service has not converged, a line per task in the way (for the
/// timeout error): wanted tasks not running or out of date, missing ones,
/// and the latest failure of each slot.
pub fn stuck(tasks: &[TaskView], target: &Target) -> Vec<String> {
    let mut lines = Vec::new();
    let mut wanted: Vec<&TaskView> = tasks.iter().filter(|t| wanted(t)).collect();
    wanted.sort_by_key(|t| (slot_key(t, target.global), t.created_at_ms));
    for t in &wanted {
        if t.spec_version < target.min_version {
            lines.push(format!(
                "{}: {} with spec version {}; waiting for version {}",
                t.name, t.current_state, t.spec_version, target.min_version
            ));
        } else if t.current_state != TaskState::Running {
            lines.push(reason(t));
        }
    }
    let missing = target.desired.saturating_sub(wanted.len() as u64);
    if missing > 0 {
        lines.push(format!(
            "{missing} of {} tasks not created yet",
            target.desired
        ));
    }
    let extra = (wanted.len() as u64).saturating_sub(target.desired);
    if extra > 0 {
        lines.push(format!(
            "{extra} tasks above the {} wanted still to stop",
            target.desired
        ));
    }
    let mut last_failure: BTreeMap<SlotKey, &TaskView> = BTreeMap::new();
    for t in failures(tasks, target, &HashSet::new()) {
        let entry = last_failure.entry(slot_key(t, target.global)).or_insert(t);
        if t.created_at_ms > entry.created_at_ms {
            *entry = t;
        }
    }
    for t in last_failure.values() {
        lines.push(format!("last failure: {}", reason(t)));
    }
    lines
}

/// Prints the progress block: redrawn in place on a terminal; otherwise
/// only the lines that changed, so a log reads as a history. Notes (task
/// failures) are printed once, above the block.
pub struct Screen<W> {
    out: W,
    tty: bool,
    shown: Vec<String>,
}

impl<W: Write> Screen<W> {
    pub fn new(out: W, tty: bool) -> Self {
        Screen {
            out,
            tty,
            shown: Vec::new(),
        }
    }

    pub fn draw(&mut self, notes: &[String], lines: &[String]) -> std::io::Result<()> {
        if self.tty {
            let old = self.shown.len();
            if old > 0 {
                write!(self.out, "\x1b[{old}A")?;
            }
            for line in notes.iter().chain(lines) {
                writeln!(self.out, "\x1b[2K{line}")?;
            }
            // Clear what is left of a longer block, then come back up.
            let leftover = old.saturating_sub(notes.len() + lines.len());
            for _ in 0..leftover {
                writeln!(self.out, "\x1b[2K")?;
            }
            if leftover > 0 {
                write!(self.out, "\x1b[{leftover}A")?;
            }
        } else {
            for note in notes {
                writeln!(self.out, "{note}")?;
            }
            for (i, line) in lines.iter().enumerate() {
                if self.shown.get(i) != Some(line) {
                    writeln!(self.out, "{line}")?;
                }
            }
        }
        self.shown = lines.to_vec();
        self.out.flush()
    }

    /// A line below the block, which stays.
    pub fn finish(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.shown.clear();
        self.out.flush()
    }
}

/// What one wait is for.
pub struct Watch {
    /// Id (or name) of the service.
    pub service: String,
    /// Tasks from this spec version on are up to date.
    pub min_version: u64,
    /// The update status before the command, and the tasks that had
    /// already failed: neither is news.
    pub baseline_status: Option<UpdateStatus>,
    pub baseline_failed: HashSet<String>,
    /// `service rollback`: a completed rollback is success.
    pub rollback: bool,
}

impl Watch {
    /// A wait on `before` (the service as it was before the command) that
    /// ignores what was already so then.
    pub fn after(before: &ServiceView, before_tasks: &[TaskView], min_version: u64) -> Self {
        Watch {
            service: before.id.clone(),
            min_version,
            baseline_status: before.update_status.clone(),
            baseline_failed: before_tasks
                .iter()
                .filter(|t| t.current_state.is_final())
                .map(|t| t.id.clone())
                .collect(),
            rollback: false,
        }
    }
}

/// Polls the service until it converges (`Ok`), its update stops short, or
/// `flags.timeout` passes (an error listing what is in the way).
pub async fn watch(socket: &Path, mut watch: Watch, flags: &WatchFlags) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut screen = Screen::new(stdout, tty);
    let started = Instant::now();
    loop {
        let view = inspect(socket, &watch.service).await?;
        let tasks = tasks_of(socket, &view.id).await?;
        let target = Target {
            desired: view.desired,
            min_version: watch.min_version,
            global: view.spec.replicas().is_none(),
        };
        let now = progress(&tasks, &target);
        let outcome = update_outcome(
            view.update_status.as_ref(),
            watch.baseline_status.as_ref(),
            watch.rollback,
        );
        if !flags.quiet {
            let notes: Vec<String> = failures(&tasks, &target, &watch.baseline_failed)
                .into_iter()
                .map(reason)
                .collect();
            screen.draw(&notes, &frame(&now, &target))?;
        }
        watch.baseline_failed.extend(
            tasks
                .iter()
                .filter(|t| t.current_state.is_final())
                .map(|t| t.id.clone()),
        );
        if let UpdateOutcome::Failed(why) = outcome {
            bail!("service `{}`: {why}", view.name);
        }
        if now.converged && outcome == UpdateOutcome::Settled {
            if !flags.quiet {
                screen.finish("verify: Service converged")?;
            }
            return Ok(());
        }
        if started.elapsed() >= flags.timeout {
            let mut message = format!(
                "service `{}` did not converge within {}: {} of {} tasks running",
                view.name,
                format_duration(flags.timeout),
                now.running,
                target.desired
            );
            if outcome == UpdateOutcome::InProgress {
                message.push_str("; the update is still in progress");
            }
            for line in stuck(&tasks, &target) {
                message.push_str("\n  ");
                message.push_str(&line);
            }
            message.push_str(&format!(
                "\nsee `shoal service ps {}`; the managers keep trying",
                view.name
            ));
            bail!(message);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tasks::tests::task;
    use super::*;

    const RUN: TaskState = TaskState::Running;
    const DOWN: TaskState = TaskState::Shutdown;

    fn replicated(desired: u64, min_version: u64) -> Target {
        Target {
            desired,
            min_version,
            global: false,
        }
    }

    fn at(mut t: TaskView, version: u64, created: u64) -> TaskView {
        t.spec_version = version;
        t.created_at_ms = created;
        t.id = format!("{}-v{version}-{created}", t.id);
        t
    }

    #[test]
    fn converges_when_every_slot_runs_the_current_spec() {
        let target = replicated(2, 1);
        let one = task("web.1", 1, RUN, RUN);
        let two_pending = task("web.2", 2, RUN, TaskState::Pending);
        let p = progress(&[one.clone(), two_pending], &target);
        assert_eq!((p.running, p.converged), (1, false));
        let two = task("web.2", 2, RUN, RUN);
        let p = progress(&[one.clone(), two.clone()], &target);
        assert_eq!((p.running, p.converged), (2, true));
        // History (desired shutdown) does not count either way.
        let old = task("web.2", 2, DOWN, TaskState::Failed);
        assert!(progress(&[one.clone(), two, old], &target).converged);
        // Too few tasks created yet.
        assert!(!progress(&[one], &target).converged);
        assert!(progress(&[], &replicated(0, 1)).converged);
    }

    #[test]
    fn old_versions_and_extra_tasks_keep_it_waiting() {
        let target = replicated(2, 2);
        let old1 = at(task("web.1", 1, RUN, RUN), 1, 1);
        let old2 = at(task("web.2", 2, RUN, RUN), 1, 1);
        let p = progress(&[old1.clone(), old2.clone()], &target);
        assert_eq!((p.running, p.converged), (0, false));
        // Start-first: a new task runs beside the old one of its slot.
        let new1 = at(task("web.1", 1, RUN, RUN), 2, 5);
        let p = progress(&[old1, old2.clone(), new1.clone()], &target);
        assert_eq!((p.running, p.converged), (1, false));
        assert_eq!(
            p.slots[0].id, new1.id,
            "the newest task speaks for its slot"
        );
        let new2 = at(task("web.2", 2, RUN, RUN), 2, 5);
        let mut old2_stopping = old2;
        old2_stopping.desired_state = DOWN;
        assert!(progress(&[new1.clone(), new2.clone(), old2_stopping], &target).converged);
        // Scaling down: a third wanted task still has to stop.
        let three = at(task("web.3", 3, RUN, RUN), 2, 5);
        assert!(!progress(&[new1, new2, three], &target).converged);
    }

    #[test]
    fn a_scale_down_not_yet_acted_on_counts_no_more_than_wanted() {
        // 4 -> 1: the managers have not yet asked three tasks to stop.
        let target = replicated(1, 0);
        let tasks: Vec<TaskView> = (1..=4)
            .map(|i| at(task(&format!("web.{i}"), i, RUN, RUN), i, i))
            .collect();
        let p = progress(&tasks, &target);
        assert_eq!((p.running, p.converged), (1, false));
        let lines = frame(&p, &target);
        assert_eq!(lines[0], "overall progress: 1 out of 1 tasks");
        assert_eq!(lines.len(), 2, "{lines:?}");
        // Once they stop, the task left converges whatever version made it
        // (version 1, older than the scale before this one).
        let mut stopped = tasks.clone();
        for t in &mut stopped[1..] {
            t.desired_state = DOWN;
        }
        assert!(progress(&stopped, &target).converged);
        assert!(stuck(&stopped, &target).is_empty());
    }

    #[test]
    fn global_services_count_nodes() {
        let target = Target {
            desired: 2,
            min_version: 1,
            global: true,
        };
        let mut a = task("agent.n1", 0, RUN, RUN);
        a.node_id = Some("n1".into());
        let mut b = a.clone();
        b.id = "other".into();
        let p = progress(&[a.clone(), b.clone()], &target);
        assert_eq!(
            (p.running, p.converged),
            (1, false),
            "two tasks on one node"
        );
        b.node_id = Some("n2".into());
        let p = progress(&[a, b], &target);
        assert_eq!((p.running, p.converged), (2, true));
        let lines = frame(&p, &target);
        assert_eq!(lines[0], "overall progress: 2 out of 2 tasks");
        assert!(lines[1].starts_with("n1: running   [====="), "{lines:?}");
    }

    #[test]
    fn frame_draws_dockers_bars_and_errors() {
        let target = replicated(3, 1);
        let mut pending = task("web.2", 2, RUN, TaskState::Pending);
        pending.message = "no suitable node (insufficient memory on 2 nodes)".into();
        let mut failed = task("web.3", 3, RUN, TaskState::Failed);
        failed.error = Some("exit status 1".into());
        let p = progress(&[task("web.1", 1, RUN, RUN), pending, failed], &target);
        let bar = format!("[{}>]", "=".repeat(50));
        assert_eq!(
            frame(&p, &target),
            [
                "overall progress: 1 out of 3 tasks".to_string(),
                format!("1/3: running   {bar}"),
                format!(
                    "2/3: pending   [{}>{}] no suitable node (insufficient memory on 2 nodes)",
                    "=".repeat(20),
                    " ".repeat(30)
                ),
                "3/3: exit status 1".to_string(),
            ]
        );
    }

    #[test]
    fn stuck_says_what_is_in_the_way() {
        let target = replicated(3, 2);
        let mut pending = at(task("web.2", 2, RUN, TaskState::Pending), 2, 5);
        pending.message = "no suitable node (1 node not available for new tasks)".into();
        let old = at(task("web.1", 1, RUN, RUN), 1, 1);
        let mut failed = at(task("web.2", 2, DOWN, TaskState::Failed), 2, 3);
        failed.error = Some("exit status 2".into());
        assert_eq!(
            stuck(&[pending, old, failed], &target),
            [
                "web.1: running with spec version 1; waiting for version 2",
                "web.2: pending: no suitable node (1 node not available for new tasks)",
                "1 of 3 tasks not created yet",
                "last failure: web.2: failed: exit status 2",
            ]
        );
    }

    #[test]
    fn unchanged_tasks_keep_their_version() {
        let spec = |replicas: u64, cmd: &str| {
            let mut s: ServiceSpec = serde_json::from_value(serde_json::json!({
                "name": "web",
                "mode": {"replicated": {"replicas": replicas}},
                "task": {"command": [cmd]},
            }))
            .unwrap();
            s.task.env.clear();
            s
        };
        let view = |spec: ServiceSpec, version: u64| ServiceView {
            id: "s".into(),
            name: "web".into(),
            mode: "replicated".into(),
            running: 0,
            desired: 1,
            version,
            spec,
            networks: vec![],
            previous_spec: None,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        };
        let before = view(spec(1, "sleep"), 3);
        assert_eq!(min_version(&before, &view(spec(5, "sleep"), 4), false), 0);
        assert_eq!(min_version(&before, &view(spec(5, "sleep"), 4), true), 4);
        assert_eq!(min_version(&before, &view(spec(1, "top"), 4), false), 4);
    }

    #[test]
    fn update_status_decides_with_the_tasks() {
        let status = |state, message: &str| UpdateStatus {
            state,
            started_at_ms: 7,
            completed_at_ms: None,
            message: message.into(),
        };
        assert_eq!(update_outcome(None, None, false), UpdateOutcome::Settled);
        let updating = status(UpdateState::Updating, "");
        assert_eq!(
            update_outcome(Some(&updating), Some(&updating), false),
            UpdateOutcome::InProgress
        );
        let paused = status(UpdateState::Paused, "task abc failed: exit status 1");
        assert_eq!(
            update_outcome(Some(&paused), None, false),
            UpdateOutcome::Failed("update paused: task abc failed: exit status 1".into())
        );
        assert_eq!(
            update_outcome(Some(&paused), Some(&paused), false),
            UpdateOutcome::Settled,
            "an earlier pause is not this command's"
        );
        let rolled_back = status(UpdateState::RollbackCompleted, "");
        assert_eq!(
            update_outcome(Some(&rolled_back), None, false),
            UpdateOutcome::Failed("service rolled back".into())
        );
        assert_eq!(
            update_outcome(Some(&rolled_back), None, true),
            UpdateOutcome::Settled
        );
    }

    #[test]
    fn screen_without_a_terminal_prints_only_changes() {
        let mut out = Vec::new();
        let mut screen = Screen::new(&mut out, false);
        let a = |s: &[&str]| -> Vec<String> { s.iter().map(|s| s.to_string()).collect() };
        screen
            .draw(&[], &a(&["overall 0", "1/2: new", "2/2: new"]))
            .unwrap();
        screen
            .draw(&[], &a(&["overall 0", "1/2: new", "2/2: new"]))
            .unwrap();
        screen
            .draw(
                &a(&["web.1: failed: boom"]),
                &a(&["overall 1", "1/2: new", "2/2: running"]),
            )
            .unwrap();
        screen.finish("verify: Service converged").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "overall 0\n1/2: new\n2/2: new\nweb.1: failed: boom\noverall 1\n2/2: running\nverify: Service converged\n"
        );
    }

    #[test]
    fn screen_on_a_terminal_redraws_in_place() {
        let mut out = Vec::new();
        let mut screen = Screen::new(&mut out, true);
        screen.draw(&[], &["a".into(), "b".into()]).unwrap();
        screen.draw(&[], &["c".into()]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[2Ka\n\x1b[2Kb\n\x1b[2A\x1b[2Kc\n\x1b[2K\n\x1b[1A"
        );
    }
}
