//! Runs tasks. A [`Runtime`] starts a task's command inside its sandbox and
//! reports what became of it. The `container` runtime runs a task as an
//! OCI container of its image with Docker's isolation (runc, overlayfs,
//! the sandbox's network namespace); the `process` runtime gives a host
//! command the sandbox's network namespace (built by the overlay), a mount
//! namespace of its own with a private `/etc/resolv.conf`, and a cgroup
//! holding its limits; [`TaskRuntimes`] picks one per task. A runtime never
//! decides what should run: the worker's task loop does, from the
//! managers' assignments.

use std::path::PathBuf;
use std::time::Duration;

use shoal_control::objects::PayloadFile;
use thiserror::Error;

pub mod container;
pub mod fake;
mod logfiles;
pub mod process;
mod select;
pub mod task_files;

pub use container::{
    ContainerConfig, ContainerOptions, ContainerRuntime, Health, HealthStatus, VolumeError,
    VolumeUse,
};
pub use fake::FakeRuntime;
pub use process::{cgroup2_mount, ProcessRuntime};
pub use select::TaskRuntimes;

/// Everything needed to start one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub task_id: String,
    /// The command and its arguments; `command[0]` is looked up in `PATH`.
    pub command: Vec<String>,
    /// `KEY=VALUE`, added to a minimal environment (PATH, HOME=/).
    pub env: Vec<String>,
    /// The network namespace to run in (the task's sandbox).
    pub netns: PathBuf,
    /// Contents of the task's private `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// CPU limit in nano-CPUs (1e9 = one CPU); 0 = none.
    pub limit_nano_cpus: u64,
    /// Memory limit in bytes; 0 = none.
    pub limit_memory: u64,
    /// Set for a container: its image and Docker options (`command` is
    /// then the service's Command, replacing the image's Entrypoint).
    /// `None` runs `command` as a host process.
    pub container: Option<ContainerConfig>,
    /// The task's secrets and configs with their data (never printed:
    /// their `Debug` hides it).
    pub secrets: Vec<PayloadFile>,
    pub configs: Vec<PayloadFile>,
}

/// How a task's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// It ended while no agent was watching (after an agent restart).
    Unknown,
    /// The kernel's OOM killer ended it (its memory limit was reached).
    OomKilled,
}

impl Exit {
    /// Docker's exit code: the code, or 128 + signal.
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(s) => Some(128 + s),
            Exit::Unknown => None,
            Exit::OomKilled => Some(128 + libc::SIGKILL),
        }
    }
}

/// What a runtime knows of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    Running { pid: u32 },
    Exited(Exit),
}

/// Which output a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
}

/// A point in a task's output: its first `offset` bytes had been written
/// by `time_ns` (Unix nanoseconds). A runtime records one whenever it sees
/// an output grow, so a line's time is that of the first mark at or after
/// its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMark {
    pub offset: u64,
    pub time_ns: u64,
}

#[derive(Debug, Error)]
pub enum ExecutorError {
    #[error("task {0}: the command is empty")]
    EmptyCommand(String),
    #[error("task {task}: cannot start `{command}`")]
    Spawn {
        task: String,
        command: String,
        source: std::io::Error,
    },
    #[error("task {task}: cgroup {path}")]
    Cgroup {
        task: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("task {task}: {path}")]
    Io {
        task: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("task {0} is not known to this runtime")]
    Unknown(String),
    #[error(
        "task id `{0}` cannot name a directory: use 1-128 letters, digits, `-`, `_` \
         and `.`, not starting with `.`"
    )]
    InvalidTaskId(String),
    #[error("cannot set up the runtime at {path}")]
    Setup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("task {task}: image {image}")]
    Image {
        task: String,
        image: String,
        source: Box<crate::image::ImageError>,
    },
    #[error("task {task}: {message}")]
    Container { task: String, message: String },
    #[error(
        "task {0} asks for a container, but this node has no container runtime \
         (install runc: `apt-get install runc`, then restart the agent)"
    )]
    NoContainerRuntime(String),
}

/// The kernel boundary of task execution: a real implementation
/// ([`ProcessRuntime`]) and a recording fake ([`FakeRuntime`]). Calls may
/// block (they touch /proc and cgroupfs); callers run them off the async
/// threads.
pub trait Runtime: Send + Sync + 'static {
    /// Readies what a start of `launch` needs and may take long: a
    /// container's image is pulled when the node lacks it. An error here
    /// means the node cannot run the task at all (the task is Rejected).
    fn prepare(&self, _launch: &Launch) -> Result<(), ExecutorError> {
        Ok(())
    }
    /// Starts the task; returns its pid. Starting a task that already
    /// runs is an error-free no-op returning the running pid.
    fn start(&self, launch: &Launch) -> Result<u32, ExecutorError>;
    /// The task's state, or `None` if this runtime never started it (nor
    /// adopted it after a restart).
    fn state(&self, task_id: &str) -> Option<ProcessState>;
    /// Stops the task: SIGTERM to every process of its cgroup, SIGKILL
    /// after `grace`. Returns once nothing of it runs.
    fn stop(&self, task_id: &str, grace: Duration) -> Result<(), ExecutorError>;
    /// Forgets a task: kills whatever of it still runs, then deletes its
    /// cgroup, its state and its logs.
    fn remove(&self, task_id: &str) -> Result<(), ExecutorError>;
    /// Every task this runtime knows, running or exited (adopted from disk
    /// after an agent restart).
    fn tasks(&self) -> Vec<String>;
    /// Up to `max` bytes of a task's output from byte `offset`; returns
    /// the bytes and the offset to ask from next time.
    fn logs(
        &self,
        task_id: &str,
        stream: Stream,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ExecutorError>;
    /// The task's health when it has a health check; `None` otherwise
    /// (and for runtimes without health checks).
    fn health(&self, _task_id: &str) -> Option<Health> {
        None
    }
    /// How many bytes of output a task has written to `stream` so far.
    fn log_size(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError>;
    /// The first offset of `stream` the runtime still holds: output before
    /// it was rotated away to cap the task's disk use (offsets never move).
    fn log_start(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        self.log_size(task_id, stream).map(|_| 0)
    }
    /// The marks that time the bytes `from..to` of a stream, in offset
    /// order: those past `from`, up to and including the first at or past
    /// `to`. Bytes written so recently that no mark covers them yet get one
    /// for the output's current end.
    fn log_marks(
        &self,
        task_id: &str,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Vec<LogMark>, ExecutorError>;
}
