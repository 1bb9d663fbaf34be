//! The built-in `process` runtime: a task is a process started in its
//! sandbox's network namespace, with a private mount namespace holding its
//! own `/etc/resolv.conf`, inside a cgroup of its own that limits CPU and
//! memory.
//!
//! Per task it keeps `<state_dir>/<task_id>/` (0700; files 0600 but the
//! task's resolv.conf): `stdout.log`, `stderr.log`,
//! their `.marks` (when the output grew, sampled every 200 ms), `resolv.conf`
//! and `task.json` (pid, start time, exit). Each output keeps at most its
//! limit on disk: the oldest part is punched out (`rotate`), offsets stay. Tasks outlive the agent: a new
//! runtime on the same state dir adopts those still running.
//! The task is its main process: when that ends, whatever it left in its
//! cgroup is killed, as Docker's PID 1 takes its container down with it.

mod cgroup;
pub(crate) mod marks;
pub(crate) mod mounts;
pub(crate) mod rotate;
mod spawn;
pub(crate) mod store;

use super::task_files::{self, Layout, CONFIGS_DIR_ENV, SECRETS_DIR_ENV};
use shoal_control::error_chain::ErrorChain;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::private_files::{open_append, private_dir};
use cgroup::{CgroupTree, TaskCgroup};
pub use mounts::cgroup2_mount;
pub use rotate::DEFAULT_LOG_LIMIT;
use store::{Identity, Record};

use super::{ExecutorError, Exit, Launch, LogMark, ProcessState, Runtime, Stream};

/// The task's secrets and configs (a tmpfs), in its directory.
const TASK_FILES_DIR: &str = "files";
/// How long `stop` waits after `cgroup.kill` for the cgroup to empty, and
/// then for the reaper to record the exit.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often the sizes of the tasks' outputs are sampled into marks: the
/// precision of the times `service logs --timestamps` shows.
const MARK_EVERY: Duration = Duration::from_millis(200);

/// Runs tasks as processes; see the module docs.
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    /// Bytes of each output kept on disk (see `rotate`).
    log_limit: AtomicU64,
    cgroups: CgroupTree,
    tasks: Mutex<HashMap<String, Task>>,
    /// Notified whenever a reaper records an exit.
    exited: Condvar,
}

struct Task {
    record: Record,
    /// Found running at start-up: not our child, so watched through /proc.
    adopted: bool,
    /// The offset of the last mark of each output (see [`Stream::BOTH`]).
    marked: [u64; 2],
}

impl Task {
    /// A task whose marks files in `dir` may already hold marks (a task
    /// started again, or adopted).
    fn new(record: Record, adopted: bool, dir: &Path) -> Task {
        let marked = Stream::BOTH.map(|s| {
            marks::last(&marks::marks_path(dir, s))
                .ok()
                .flatten()
                .map_or(0, |m| m.offset)
        });
        Task {
            record,
            adopted,
            marked,
        }
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl ProcessRuntime {
    /// Opens the runtime: creates `state_dir` and `cgroup_root` (a directory
    /// on the cgroup2 filesystem, e.g. `/sys/fs/cgroup/shoal`; see
    /// [`cgroup2_mount`]) and adopts every task recorded in `state_dir`. On
    /// a hybrid host, whose `cpu` or `memory` controller is bound to cgroup
    /// v1, the limits go to the same relative path in that v1 hierarchy
    /// (`/sys/fs/cgroup/memory/shoal/<task>` for `/sys/fs/cgroup/unified/shoal`).
    pub fn new(state_dir: PathBuf, cgroup_root: PathBuf) -> Result<Self, ExecutorError> {
        private_dir(&state_dir).map_err(|source| ExecutorError::Setup {
            path: state_dir.clone(),
            source,
        })?;
        let cgroups = CgroupTree::open(&cgroup_root)?;
        let inner = Inner {
            log_limit: AtomicU64::new(DEFAULT_LOG_LIMIT),
            tasks: Mutex::new(adopt_all(&state_dir, &cgroups)?),
            state_dir,
            cgroups,
            exited: Condvar::new(),
        };
        let inner = Arc::new(inner);
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("log-marks".into())
            .spawn(move || mark_logs(weak))
            .map_err(|source| ExecutorError::Setup {
                path: inner.state_dir.clone(),
                source,
            })?;
        Ok(ProcessRuntime { inner })
    }

    /// Keeps at most `bytes` of each task output on disk (at least 64 KiB).
    pub fn with_log_limit(self, bytes: u64) -> Self {
        self.inner
            .log_limit
            .store(bytes.max(64 * 1024), Ordering::Relaxed);
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Task>> {
        self.inner.lock()
    }

    /// The task's current state, after noticing the end of an adopted one.
    fn refresh(&self, id: &str, task: &mut Task) -> ProcessState {
        if let Some(exit) = task.record.exit {
            return ProcessState::Exited(exit.into());
        }
        if !task.adopted || store::is_alive(task.record.identity()) {
            return ProcessState::Running {
                pid: task.record.pid,
            };
        }
        // It ended while nobody could wait for it; another runtime of this
        // process may still have recorded how.
        let dir = self.inner.task_dir(id);
        let exit = match store::load(&dir) {
            Ok(Some(r)) if r.identity() == task.record.identity() => r.exit,
            _ => None,
        }
        .unwrap_or(store::StoredExit::Unknown);
        task.record.exit = Some(exit);
        self.inner.persist(&dir, &task.record);
        self.inner.cgroups.task(id).release();
        ProcessState::Exited(exit.into())
    }

    fn spawn_task(&self, launch: &Launch) -> Result<(Record, Child), ExecutorError> {
        let id = &launch.task_id;
        let spawn_err = |source| ExecutorError::Spawn {
            task: id.clone(),
            command: launch.command[0].clone(),
            source,
        };
        if !spawn::host_has_resolv_conf() {
            return Err(spawn_err(io::Error::other(
                "this host has no /etc/resolv.conf to mount the task's own over",
            )));
        }
        let dir = self.inner.task_dir(id);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecutorError::Io {
                task: id.clone(),
                path,
                source,
            }
        };
        private_dir(&dir).map_err(io_err(&dir))?;
        let files = dir.join(TASK_FILES_DIR);
        // A restart of the task makes its files again.
        task_files::remove(&files).map_err(io_err(&files))?;
        let made = task_files::make(&files, &launch.secrets, &launch.configs, Layout::ByName)
            .map_err(io_err(&files))?;
        let mut launch = launch.clone();
        for (env, sub, given) in [
            (SECRETS_DIR_ENV, "secrets", !launch.secrets.is_empty()),
            (CONFIGS_DIR_ENV, "configs", !launch.configs.is_empty()),
        ] {
            if given {
                launch
                    .env
                    .push(format!("{env}={}", files.join(sub).display()));
            }
        }
        debug_assert!(made.len() == launch.secrets.len() + launch.configs.len());
        let launch = &launch;
        let resolv_conf = dir.join("resolv.conf");
        fs::write(&resolv_conf, &launch.resolv_conf).map_err(io_err(&resolv_conf))?;
        let log = |name: &str| {
            let path = dir.join(name);
            open_append(&path).map_err(io_err(&path))
        };
        let (stdout, stderr) = (log("stdout.log")?, log("stderr.log")?);
        let cgroup = self.inner.cgroups.task(id);
        cgroup.create(launch.limit_nano_cpus, launch.limit_memory)?;
        let sandbox = spawn::Sandbox {
            cgroup_procs: cgroup.open_procs()?,
            netns: File::open(&launch.netns).map_err(io_err(&launch.netns))?,
            resolv_conf,
            stdout,
            stderr,
        };
        let mut child = spawn::spawn(launch, sandbox).map_err(spawn_err)?;
        let pid = child.id();
        let Some(stat) = store::proc_stat(pid) else {
            // Unreachable while the child is unreaped; never leave it behind.
            let _ = child.kill();
            let _ = child.wait();
            let path = PathBuf::from(format!("/proc/{pid}/stat"));
            return Err(io_err(&path)(io::ErrorKind::NotFound.into()));
        };
        let record = Record {
            task_id: id.clone(),
            pid,
            start_time: stat.start_time,
            exit: None,
        };
        if let Err(source) = store::save(&dir, &record) {
            // A task without a record could not be adopted after a restart.
            let _ = cgroup.kill();
            let _ = child.wait();
            return Err(io_err(&store::record_path(&dir))(source));
        }
        Ok((record, child))
    }
}

impl Runtime for ProcessRuntime {
    /// Blocks for the fork and exec.
    fn start(&self, launch: &Launch) -> Result<u32, ExecutorError> {
        let id = &launch.task_id;
        if launch.command.is_empty() {
            return Err(ExecutorError::EmptyCommand(id.clone()));
        }
        check_task_id(id)?;
        // Held throughout, so two starts of one task never both spawn.
        let mut tasks = self.lock();
        if let Some(task) = tasks.get_mut(id) {
            if let ProcessState::Running { pid } = self.refresh(id, task) {
                return Ok(pid);
            }
        }
        let (record, child) = match self.spawn_task(launch) {
            Ok(started) => started,
            Err(e) => {
                let _ = self.inner.cgroups.task(id).remove();
                let _ = task_files::remove(&self.inner.task_dir(id).join(TASK_FILES_DIR));
                if !tasks.contains_key(id) {
                    let _ = fs::remove_dir_all(self.inner.task_dir(id));
                }
                return Err(e);
            }
        };
        let pid = record.pid;
        let identity = record.identity();
        let task = Task::new(record, false, &self.inner.task_dir(id));
        tasks.insert(id.clone(), task);
        drop(tasks);
        let weak = Arc::downgrade(&self.inner);
        let (dir, cgroup) = (self.inner.task_dir(id), self.inner.cgroups.task(id));
        let reaper = std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || reap(weak, dir, cgroup, identity, child));
        if let Err(source) = reaper {
            // The child's handle went down with the closure: kill and reap
            // it by pid; the next state() finds it gone.
            let _ = self.inner.cgroups.task(id).kill();
            let _ = waitpid(Pid::from_raw(pid as i32), None);
            if let Some(task) = self.lock().get_mut(id) {
                task.adopted = true;
            }
            return Err(ExecutorError::Spawn {
                task: id.clone(),
                command: launch.command[0].clone(),
                source,
            });
        }
        Ok(pid)
    }

    /// Reads /proc for an adopted task; otherwise only memory.
    fn state(&self, task_id: &str) -> Option<ProcessState> {
        let mut tasks = self.lock();
        let task = tasks.get_mut(task_id)?;
        Some(self.refresh(task_id, task))
    }

    /// Blocks up to `grace` plus twice [`KILL_WAIT`].
    fn stop(&self, task_id: &str, grace: Duration) -> Result<(), ExecutorError> {
        if !self.lock().contains_key(task_id) {
            return Err(ExecutorError::Unknown(task_id.to_string()));
        }
        let cgroup = self.inner.cgroups.task(task_id);
        cgroup.signal_all(Signal::SIGTERM)?;
        if !cgroup.wait_empty(grace)? {
            cgroup.kill_and_wait(KILL_WAIT)?;
        }
        // Our own child: wait for its reaper, so state() says Exited now.
        let tasks = self.lock();
        let (mut tasks, _) = self
            .inner
            .exited
            .wait_timeout_while(tasks, KILL_WAIT, |tasks| {
                tasks
                    .get(task_id)
                    .is_some_and(|t| !t.adopted && t.record.exit.is_none())
            })
            .unwrap_or_else(|e| e.into_inner());
        if let Some(task) = tasks.get_mut(task_id) {
            self.refresh(task_id, task);
        }
        Ok(())
    }

    /// Kills what still runs, then deletes the task's cgroup and its whole
    /// directory, logs included. Blocks like `stop` with no grace.
    fn remove(&self, task_id: &str) -> Result<(), ExecutorError> {
        if !self.lock().contains_key(task_id) {
            return Err(ExecutorError::Unknown(task_id.to_string()));
        }
        let cgroup = self.inner.cgroups.task(task_id);
        if cgroup.populated()? {
            self.stop(task_id, Duration::ZERO)?;
        }
        cgroup.remove()?;
        let mut tasks = self.lock();
        let dir = self.inner.task_dir(task_id);
        let files = dir.join(TASK_FILES_DIR);
        task_files::remove(&files).map_err(|source| ExecutorError::Io {
            task: task_id.to_string(),
            path: files,
            source,
        })?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ExecutorError::Io {
                    task: task_id.to_string(),
                    path: dir,
                    source: e,
                })
            }
            _ => {}
        }
        tasks.remove(task_id);
        Ok(())
    }

    fn tasks(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Reads the log file.
    fn logs(
        &self,
        task_id: &str,
        stream: Stream,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ExecutorError> {
        let path = self.log_file(task_id, stream)?;
        let read = || -> io::Result<Vec<u8>> {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            file.take(max as u64).read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let bytes = read().map_err(|source| ExecutorError::Io {
            task: task_id.to_string(),
            path: path.clone(),
            source,
        })?;
        let next = offset + bytes.len() as u64;
        Ok((bytes, next))
    }

    /// The first data block of the log (see `rotate`).
    fn log_start(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        let path = self.log_file(task_id, stream)?;
        let kept = match File::open(&path) {
            Ok(log) => rotate::first_kept(&log),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        };
        kept.map_err(|source| ExecutorError::Io {
            task: task_id.to_string(),
            path,
            source,
        })
    }

    fn log_size(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        let path = self.log_file(task_id, stream)?;
        let current = marks::current(&path).map_err(|source| ExecutorError::Io {
            task: task_id.to_string(),
            path,
            source,
        })?;
        Ok(current.map_or(0, |m| m.offset))
    }

    /// Reads the marks file; the output's size and last write stand in for
    /// bytes the sampler has not seen yet.
    fn log_marks(
        &self,
        task_id: &str,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Vec<LogMark>, ExecutorError> {
        let log = self.log_file(task_id, stream)?;
        let dir = self.inner.task_dir(task_id);
        let path = marks::marks_path(&dir, stream);
        let io_err = |path: PathBuf| {
            let task = task_id.to_string();
            move |source| ExecutorError::Io { task, path, source }
        };
        let mut found = marks::covering(&path, from, to).map_err(io_err(path.clone()))?;
        if found.last().is_none_or(|m| m.offset < to) {
            let live = marks::current(&log).map_err(io_err(log))?;
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
}

impl ProcessRuntime {
    /// The path of a known task's log file.
    fn log_file(&self, task_id: &str, stream: Stream) -> Result<PathBuf, ExecutorError> {
        if !self.lock().contains_key(task_id) {
            return Err(ExecutorError::Unknown(task_id.to_string()));
        }
        Ok(marks::log_path(&self.inner.task_dir(task_id), stream))
    }
}

/// The sampler: every [`MARK_EVERY`], marks each output that grew; ends
/// once the runtime is dropped.
fn mark_logs(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(MARK_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let ids: Vec<String> = inner.lock().keys().cloned().collect();
        for id in ids {
            inner.mark(&id);
        }
    }
}

impl Inner {
    /// Records a mark for each output of the task that grew since its last
    /// mark. Holds the lock, so `remove` never finds a mark file appearing
    /// in a directory it deletes.
    fn mark(&self, task_id: &str) {
        let mut tasks = self.lock();
        let Some(task) = tasks.get_mut(task_id) else {
            return;
        };
        let dir = self.task_dir(task_id);
        for stream in Stream::BOTH {
            let i = stream_index(stream);
            let Ok(Some(now)) = marks::current(&marks::log_path(&dir, stream)) else {
                continue;
            };
            if now.offset <= task.marked[i] {
                continue;
            }
            match marks::append(&marks::marks_path(&dir, stream), now) {
                Ok(()) => task.marked[i] = now.offset,
                Err(e) => {
                    tracing::debug!(task = %task_id, "cannot record a log mark: {}", e.chain());
                }
            }
            let limit = self.log_limit.load(Ordering::Relaxed);
            match rotate::cap(&dir, stream, limit) {
                Ok(Some(kept)) => {
                    tracing::debug!(task = %task_id, ?stream, kept, "rotated the task's output")
                }
                Ok(None) => {}
                Err(e) => {
                    // Once per agent: a filesystem without hole punching
                    // would otherwise say so every 200 ms.
                    static WARNED: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            task = %task_id,
                            "cannot cap the task's output at {limit} bytes (does the \
                             filesystem of the state dir punch holes?): {e}"
                        );
                    }
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.state_dir.join(task_id)
    }

    /// Saves a record; a task dir deleted by `remove` stays deleted.
    fn persist(&self, dir: &Path, record: &Record) {
        if let Err(e) = store::save(dir, record) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(task = %record.task_id, "cannot save the task record: {}", e.chain());
            }
        }
    }

    /// Called by a reaper: kills what our child `identity` left in its
    /// cgroup and records how it ended.
    fn record_exit(&self, cgroup: &TaskCgroup, identity: Identity, exit: Exit) {
        let mut tasks = self.lock();
        if let Some(task) = tasks.get_mut(cgroup.task_id()) {
            if task.record.identity() == identity {
                task.record.exit = Some(exit.into());
                self.persist(&self.task_dir(cgroup.task_id()), &task.record);
                cgroup.release();
            }
        }
        self.exited.notify_all();
    }
}

/// Waits for our child `child`, then kills what it left in its cgroup and
/// records its exit; with the runtime dropped meanwhile, in the record file
/// alone. Either happens only if the task still names this process: a
/// task removed and started anew is left alone.
fn reap(
    inner: Weak<Inner>,
    dir: PathBuf,
    cgroup: TaskCgroup,
    identity: Identity,
    mut child: Child,
) {
    let exit = child.wait().map_or(Exit::Unknown, exit_of);
    if let Some(inner) = inner.upgrade() {
        inner.record_exit(&cgroup, identity, exit);
        return;
    }
    match store::load(&dir) {
        Ok(Some(mut record)) if record.identity() == identity && record.exit.is_none() => {
            record.exit = Some(exit.into());
            let _ = store::save(&dir, &record);
            cgroup.release();
        }
        _ => {}
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Unknown,
    }
}

/// Reads every task record under `state_dir`: tasks still running are
/// adopted, those that ended unseen get [`Exit::Unknown`].
fn adopt_all(
    state_dir: &Path,
    cgroups: &CgroupTree,
) -> Result<HashMap<String, Task>, ExecutorError> {
    let entries = fs::read_dir(state_dir).map_err(|source| ExecutorError::Setup {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let mut tasks = HashMap::new();
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let mut record = match store::load(&dir) {
            Ok(Some(record)) if record.task_id == id => record,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(task = %id, "skipping unreadable task record: {}", e.chain());
                continue;
            }
        };
        if record.exit.is_none() && !store::is_alive(record.identity()) {
            record.exit = Some(store::StoredExit::Unknown);
            if let Err(e) = store::save(&dir, &record) {
                tracing::warn!(task = %id, "cannot save the task record: {}", e.chain());
            }
        }
        if record.exit.is_some() {
            cgroups.task(&id).release();
        }
        tasks.insert(id, Task::new(record, true, &dir));
    }
    Ok(tasks)
}

/// A task id names a directory and a cgroup: one path component of
/// letters, digits, `-`, `_` and `.`, not starting with a dot.
fn check_task_id(id: &str) -> Result<(), ExecutorError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ExecutorError::InvalidTaskId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_must_be_one_safe_path_component() {
        for good in ["t1", "abc-DEF_0.9", "x"] {
            assert!(check_task_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../etc", "a b", "ä"] {
            assert!(
                matches!(check_task_id(bad), Err(ExecutorError::InvalidTaskId(_))),
                "{bad:?}"
            );
        }
        assert!(check_task_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn exit_status_maps_to_code_or_signal() {
        assert_eq!(exit_of(ExitStatus::from_raw(3 << 8)), Exit::Code(3));
        assert_eq!(exit_of(ExitStatus::from_raw(9)), Exit::Signal(9));
        assert_eq!(exit_of(ExitStatus::from_raw(0)), Exit::Code(0));
    }
}
