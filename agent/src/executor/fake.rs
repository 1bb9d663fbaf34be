//! A recording [`Runtime`] for unit tests of the code that drives tasks: it
//! starts no process, remembers every call, and lets the test decide how
//! tasks end and what they print.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    ExecutorError, Exit, Health, HealthStatus, Launch, LogMark, ProcessState, Runtime, Stream,
};

/// The first pid the fake hands out.
const FIRST_PID: u32 = 1000;

/// A runtime that runs nothing; see the module docs.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    next_pid: u32,
    tasks: BTreeMap<String, FakeTask>,
    launches: Vec<Launch>,
    stops: Vec<(String, Duration)>,
    removes: Vec<String>,
    missing_binaries: Vec<String>,
    /// Health of the tasks the test gave a health check.
    health: HashMap<String, HealthStatus>,
}

#[derive(Debug)]
struct FakeTask {
    state: ProcessState,
    logs: HashMap<Stream, Vec<u8>>,
    /// One mark per push.
    marks: HashMap<Stream, Vec<LogMark>>,
    /// Where rotation left each output.
    kept: HashMap<Stream, u64>,
}

impl FakeTask {
    fn new(state: ProcessState) -> Self {
        FakeTask {
            state,
            logs: HashMap::new(),
            marks: HashMap::new(),
            kept: HashMap::new(),
        }
    }

    fn output(&self, stream: Stream) -> &[u8] {
        self.logs.get(&stream).map_or(&[][..], Vec::as_slice)
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every launch that started a process, in order (a start of a task
    /// already running is not one).
    pub fn launches(&self) -> Vec<Launch> {
        self.lock().launches.clone()
    }

    /// Every `stop` call with its grace, in order, known task or not.
    pub fn stops(&self) -> Vec<(String, Duration)> {
        self.lock().stops.clone()
    }

    /// Every `remove` call, in order, known task or not.
    pub fn removes(&self) -> Vec<String> {
        self.lock().removes.clone()
    }

    /// Ends a task as `exit`, as if its process had ended on its own. An
    /// unknown task is added, as one found on disk after a restart would be.
    /// Gives `task_id` a health check now in `status`.
    pub fn set_health(&self, task_id: &str, status: HealthStatus) {
        self.lock().health.insert(task_id.to_string(), status);
    }

    pub fn exit(&self, task_id: &str, exit: Exit) {
        self.set_state(task_id, ProcessState::Exited(exit));
    }

    /// Puts a task in `state` without a launch, as the real runtime adopts
    /// the tasks it finds on disk after an agent restart.
    pub fn adopt(&self, task_id: &str, state: ProcessState) {
        self.set_state(task_id, state);
    }

    /// Appends `bytes` to a known task's output, written now.
    pub fn push_log(&self, task_id: &str, stream: Stream, bytes: &[u8]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.push_log_at(task_id, stream, bytes, now);
    }

    /// Appends `bytes` to a known task's output, written at `time_ns`.
    pub fn push_log_at(&self, task_id: &str, stream: Stream, bytes: &[u8], time_ns: u64) {
        if let Some(task) = self.lock().tasks.get_mut(task_id) {
            let output = task.logs.entry(stream).or_default();
            output.extend_from_slice(bytes);
            let offset = output.len() as u64;
            let mark = LogMark { offset, time_ns };
            task.marks.entry(stream).or_default().push(mark);
        }
    }

    /// Rotates a task's output as the process runtime does: the bytes
    /// before `offset` are gone (they read as zeros), offsets stay.
    pub fn rotate_log(&self, task_id: &str, stream: Stream, offset: u64) {
        if let Some(task) = self.lock().tasks.get_mut(task_id) {
            let output = task.logs.entry(stream).or_default();
            let end = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(output.len());
            output[..end].fill(0);
            task.kept.insert(stream, end as u64);
        }
    }

    /// From now on, starting a command whose `command[0]` is `program`
    /// fails as a missing binary does: a `Spawn` error, `NotFound`.
    pub fn missing_binary(&self, program: &str) {
        self.lock().missing_binaries.push(program.to_string());
    }

    fn set_state(&self, task_id: &str, state: ProcessState) {
        let mut fake = self.lock();
        match fake.tasks.get_mut(task_id) {
            Some(task) => task.state = state,
            None => {
                fake.tasks.insert(task_id.to_string(), FakeTask::new(state));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Runtime for FakeRuntime {
    fn health(&self, task_id: &str) -> Option<Health> {
        let status = *self.lock().health.get(task_id)?;
        Some(Health {
            status,
            ..Health::default()
        })
    }

    fn start(&self, launch: &Launch) -> Result<u32, ExecutorError> {
        let Some(program) = launch.command.first() else {
            return Err(ExecutorError::EmptyCommand(launch.task_id.clone()));
        };
        let mut fake = self.lock();
        if fake.missing_binaries.contains(program) {
            return Err(ExecutorError::Spawn {
                task: launch.task_id.clone(),
                command: program.clone(),
                source: io::ErrorKind::NotFound.into(),
            });
        }
        if let Some(ProcessState::Running { pid }) =
            fake.tasks.get(&launch.task_id).map(|t| t.state)
        {
            return Ok(pid);
        }
        let pid = FIRST_PID + fake.next_pid;
        fake.next_pid += 1;
        fake.launches.push(launch.clone());
        let running = ProcessState::Running { pid };
        match fake.tasks.get_mut(&launch.task_id) {
            Some(task) => task.state = running,
            None => {
                fake.tasks
                    .insert(launch.task_id.clone(), FakeTask::new(running));
            }
        }
        Ok(pid)
    }

    fn state(&self, task_id: &str) -> Option<ProcessState> {
        self.lock().tasks.get(task_id).map(|t| t.state)
    }

    /// A running task ends as a process that obeys SIGTERM: `Signal(15)`.
    fn stop(&self, task_id: &str, grace: Duration) -> Result<(), ExecutorError> {
        let mut fake = self.lock();
        fake.stops.push((task_id.to_string(), grace));
        let task = fake
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))?;
        if let ProcessState::Running { .. } = task.state {
            task.state = ProcessState::Exited(Exit::Signal(libc::SIGTERM));
        }
        Ok(())
    }

    /// Forgets the task and its logs, as the real runtime does.
    fn remove(&self, task_id: &str) -> Result<(), ExecutorError> {
        let mut fake = self.lock();
        fake.removes.push(task_id.to_string());
        fake.tasks
            .remove(task_id)
            .map(|_| ())
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))
    }

    fn tasks(&self) -> Vec<String> {
        self.lock().tasks.keys().cloned().collect()
    }

    fn logs(
        &self,
        task_id: &str,
        stream: Stream,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ExecutorError> {
        let fake = self.lock();
        let task = fake
            .tasks
            .get(task_id)
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))?;
        let all = task.output(stream);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let end = start.saturating_add(max).min(all.len());
        let bytes = all[start..end].to_vec();
        let next = offset + bytes.len() as u64;
        Ok((bytes, next))
    }

    fn log_size(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        let fake = self.lock();
        let task = fake
            .tasks
            .get(task_id)
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))?;
        Ok(task.output(stream).len() as u64)
    }

    fn log_start(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        let fake = self.lock();
        let task = fake
            .tasks
            .get(task_id)
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))?;
        Ok(task.kept.get(&stream).copied().unwrap_or(0))
    }

    fn log_marks(
        &self,
        task_id: &str,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Vec<LogMark>, ExecutorError> {
        let fake = self.lock();
        let task = fake
            .tasks
            .get(task_id)
            .ok_or_else(|| ExecutorError::Unknown(task_id.to_string()))?;
        let all = task.marks.get(&stream).map_or(&[][..], Vec::as_slice);
        let mut found = Vec::new();
        for mark in all.iter().filter(|m| m.offset > from) {
            found.push(*mark);
            if mark.offset >= to {
                break;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(id: &str, command: &[&str]) -> Launch {
        Launch {
            task_id: id.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            netns: "/run/netns/x".into(),
            resolv_conf: String::new(),
            limit_nano_cpus: 0,
            limit_memory: 0,
            container: None,
            secrets: Vec::new(),
            configs: Vec::new(),
        }
    }

    #[test]
    fn start_records_a_launch_once_and_hands_out_pids() {
        let fake = FakeRuntime::new();
        let a = fake.start(&launch("a", &["sleep", "1"])).expect("starts");
        let b = fake.start(&launch("b", &["true"])).expect("starts");
        assert_ne!(a, b);
        assert_eq!(fake.start(&launch("a", &["sleep", "1"])).expect("no-op"), a);
        assert_eq!(fake.launches().len(), 2);
        assert_eq!(fake.state("a"), Some(ProcessState::Running { pid: a }));
        assert_eq!(fake.tasks(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn a_test_decides_how_a_task_ends() {
        let fake = FakeRuntime::new();
        fake.start(&launch("a", &["x"])).expect("starts");
        fake.exit("a", Exit::Code(1));
        assert_eq!(fake.state("a"), Some(ProcessState::Exited(Exit::Code(1))));
        // An exited task starts again.
        let pid = fake.start(&launch("a", &["x"])).expect("restarts");
        assert_eq!(fake.state("a"), Some(ProcessState::Running { pid }));
    }

    #[test]
    fn refused_starts() {
        let fake = FakeRuntime::new();
        assert!(matches!(
            fake.start(&launch("a", &[])),
            Err(ExecutorError::EmptyCommand(id)) if id == "a"
        ));
        fake.missing_binary("nope");
        let err = fake.start(&launch("b", &["nope"])).expect_err("missing");
        assert!(err.to_string().contains("`nope`"), "{err}");
        assert!(fake.launches().is_empty());
        assert_eq!(fake.state("b"), None);
    }

    #[test]
    fn stop_and_remove_are_recorded() {
        let fake = FakeRuntime::new();
        fake.start(&launch("a", &["x"])).expect("starts");
        fake.stop("a", Duration::from_secs(3)).expect("stops");
        assert_eq!(
            fake.state("a"),
            Some(ProcessState::Exited(Exit::Signal(libc::SIGTERM)))
        );
        assert!(matches!(
            fake.stop("zz", Duration::ZERO),
            Err(ExecutorError::Unknown(_))
        ));
        fake.remove("a").expect("removes");
        assert_eq!(fake.state("a"), None);
        assert_eq!(
            fake.stops(),
            vec![
                ("a".into(), Duration::from_secs(3)),
                ("zz".into(), Duration::ZERO)
            ]
        );
        assert_eq!(fake.removes(), vec!["a".to_string()]);
    }

    #[test]
    fn logs_read_what_the_test_pushed_from_an_offset() {
        let fake = FakeRuntime::new();
        fake.adopt("a", ProcessState::Running { pid: 7 });
        fake.push_log("a", Stream::Stdout, b"hello ");
        fake.push_log("a", Stream::Stdout, b"world");
        fake.push_log("a", Stream::Stderr, b"oops");
        let (bytes, next) = fake.logs("a", Stream::Stdout, 0, 5).expect("logs");
        assert_eq!((bytes.as_slice(), next), (&b"hello"[..], 5));
        let (bytes, next) = fake.logs("a", Stream::Stdout, next, 100).expect("logs");
        assert_eq!((bytes.as_slice(), next), (&b" world"[..], 11));
        let (bytes, next) = fake.logs("a", Stream::Stdout, 99, 10).expect("logs");
        assert_eq!((bytes.len(), next), (0, 99));
        let (bytes, _) = fake.logs("a", Stream::Stderr, 0, 10).expect("logs");
        assert_eq!(bytes, b"oops");
        assert!(fake.logs("b", Stream::Stdout, 0, 1).is_err());
        assert_eq!(fake.log_size("a", Stream::Stdout).expect("size"), 11);
    }

    #[test]
    fn each_push_is_marked_with_its_time() {
        let fake = FakeRuntime::new();
        fake.adopt("a", ProcessState::Running { pid: 7 });
        fake.push_log_at("a", Stream::Stdout, b"one\n", 10);
        fake.push_log_at("a", Stream::Stdout, b"two\n", 20);
        fake.push_log_at("a", Stream::Stdout, b"three\n", 30);
        let mark = |offset, time_ns| LogMark { offset, time_ns };
        let marks = fake.log_marks("a", Stream::Stdout, 4, 6).expect("marks");
        assert_eq!(marks, [mark(8, 20)]);
        let marks = fake.log_marks("a", Stream::Stdout, 0, 8).expect("marks");
        assert_eq!(marks, [mark(4, 10), mark(8, 20)]);
        assert!(fake
            .log_marks("a", Stream::Stderr, 0, 8)
            .expect("marks")
            .is_empty());
    }
}
