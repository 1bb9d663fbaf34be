//! The `container` runtime: a task is an OCI container of its image, run
//! by runc with Docker's isolation. Its root is an overlay of the image's
//! layers (from the node's [`ImageStore`]) under a writable layer of its
//! own; its network namespace is the task's sandbox; the agent writes the
//! OCI bundle (process by Docker's rules, namespaces, capabilities,
//! seccomp, masked paths, mounts, limits) and a per-container shim has
//! runc create and start it, then records its exit.
//!
//! Per task it keeps `<state_dir>/<task_id>/`: `config.json` (the
//! bundle), `rootfs/` (the overlay), `upper/` and `work/`, `stdout.log`,
//! `stderr.log` and their marks (the same files as the process runtime, so
//! `service logs` reads them alike), `resolv.conf`, `hosts`, `hostname`,
//! `container.json` (see [`record`]), the shim's `exit.json` and runc's
//! `runc.log`. A new runtime on the same directory adopts what runs.
//!
//! Never runs a container with more than Docker's defaults unless the task
//! asks (`cap_add`...), and never bind-mounts the agent's own state, socket
//! or network namespaces into one.

mod caps;
mod config;
mod files;
mod health;
mod process;
mod record;
mod rootfs;
mod runc;
mod seccomp;
pub mod shim;
mod spec;
mod start;
mod user;
mod volumes;

use shoal_control::error_chain::ErrorChain;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

pub use config::{ContainerConfig, HealthConfig, Mount};
pub use health::{Health, HealthStatus};
pub use process::HealthCheck;
pub use runc::Runc;
pub use volumes::{VolumeError, VolumeUse, Volumes};

use self::health::{HealthMonitor, ProbeResult};
use self::record::ContainerRecord;
use super::process::store::{self as proc_store, StoredExit};
use super::{logfiles, ExecutorError, Launch, LogMark, ProcessState, Runtime, Stream};
use crate::image::{GcPolicy, ImageStore};

/// How long `stop` waits for the container to end after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// How often outputs are sampled into marks (as the process runtime).
const MARK_EVERY: Duration = Duration::from_millis(200);
/// The largest passwd or group file read from an image.
const MAX_ID_FILE: u64 = 1 << 20;

/// Where the container runtime keeps things and what it runs with.
#[derive(Clone, Debug)]
pub struct ContainerOptions {
    /// Per-task directories.
    pub state_dir: PathBuf,
    pub runc: Runc,
    /// The `shoal` binary, run as `shoal container-shim` per container.
    pub shim: PathBuf,
    /// The cgroup (relative to the cgroup mounts) holding every
    /// container's, e.g. `/shoal`: the process runtime's root, so the
    /// mesh's socket hooks see both.
    pub cgroup_parent: String,
    /// A static init for `--init` (Debian's `tini-static`).
    pub init_binary: Option<PathBuf>,
    /// Named volumes live here.
    pub volumes_dir: PathBuf,
    /// Host paths no bind mount may reach into or contain: the agent's
    /// state, its socket's directory, the netns directory...
    pub protected: Vec<PathBuf>,
    /// Applied after each pull: unused images go when the disk fills.
    pub gc: GcPolicy,
}

impl ContainerOptions {
    /// The usual place of `tini-static`, if installed.
    pub fn find_init() -> Option<PathBuf> {
        [
            "/usr/bin/tini-static",
            "/usr/bin/docker-init",
            "/usr/libexec/docker/docker-init",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    }
}

/// Runs tasks as containers; see the module docs.
pub struct ContainerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ContainerOptions,
    images: Arc<ImageStore>,
    volumes: Volumes,
    handle: tokio::runtime::Handle,
    target: seccomp::Target,
    tasks: Mutex<HashMap<String, Container>>,
    /// Tasks being started, so two starts of one never race, with the
    /// named volumes they will mount.
    starting: Mutex<HashMap<String, Vec<String>>>,
}

struct Container {
    record: ContainerRecord,
    marked: [u64; 2],
    health: Option<HealthMonitor>,
}

impl ContainerRuntime {
    /// Opens the runtime on `opts.state_dir` and adopts the containers
    /// recorded there. `handle` runs the image pulls.
    pub fn new(
        opts: ContainerOptions,
        images: Arc<ImageStore>,
        handle: tokio::runtime::Handle,
    ) -> Result<ContainerRuntime, ExecutorError> {
        for dir in [&opts.state_dir, &opts.runc.root] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| ExecutorError::Setup {
                    path: dir.clone(),
                    source,
                })?;
        }
        let inner = Arc::new(Inner {
            volumes: Volumes::new(opts.volumes_dir.clone()),
            opts,
            images,
            handle,
            target: seccomp::Target::current(),
            tasks: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashMap::new()),
        });
        inner.adopt_all();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("container-marks".into())
            .spawn(move || mark_logs(weak))
            .map_err(|source| ExecutorError::Setup {
                path: inner.opts.state_dir.clone(),
                source,
            })?;
        Ok(ContainerRuntime { inner })
    }

    /// The node's named volumes.
    pub fn volumes(&self) -> &Volumes {
        &self.inner.volumes
    }

    /// `volume ls`: every volume and the tasks whose containers (running
    /// or ended but not yet removed) mount it.
    pub fn volume_list(&self) -> Vec<VolumeUse> {
        let tasks = self.inner.lock();
        let starting = self.inner.starting_lock();
        self.inner.volumes.usage(volume_users(&tasks, &starting))
    }

    /// `volume rm`: never a volume a container of this node mounts. The
    /// check and the removal hold the containers' lock, so no container
    /// is recorded meanwhile.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let tasks = self.inner.lock();
        let starting = self.inner.starting_lock();
        self.inner
            .volumes
            .remove_unused(name, force, volume_users(&tasks, &starting))
    }
}

/// Each recorded or starting container's task and the named volumes it
/// mounts.
fn volume_users<'a>(
    tasks: &'a HashMap<String, Container>,
    starting: &'a HashMap<String, Vec<String>>,
) -> impl Iterator<Item = (&'a str, &'a [String])> {
    tasks
        .iter()
        .map(|(id, c)| (id.as_str(), c.record.named_volumes.as_slice()))
        .chain(starting.iter().map(|(id, v)| (id.as_str(), v.as_slice())))
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken after [`Inner::lock`] when both are held, never before.
    fn starting_lock(&self) -> MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.starting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.opts.state_dir.join(id)
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{id}", self.opts.cgroup_parent.trim_end_matches('/'))
    }

    /// Reads every record: what still runs is adopted (its image kept, its
    /// health check resumed), what ended keeps its exit.
    fn adopt_all(self: &Arc<Self>) {
        let Ok(entries) = fs::read_dir(&self.opts.state_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let dir = entry.path();
            let record = match record::load(&dir) {
                Ok(Some(r)) if r.task_id == id => r,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(task = %id, "skipping unreadable container record: {}", e.chain());
                    continue;
                }
            };
            if let Err(e) = self.images.acquire(&id, &record.image) {
                tracing::warn!(task = %id, "the image of an adopted container: {}", e.chain());
            }
            let running = record.exit.is_none()
                && (proc_store::is_alive(record.identity())
                    || proc_store::is_alive(record.shim_identity()));
            let health = match (&record.health, running) {
                (Some(check), true) => self.monitor(&id, check.clone(), Instant::now()),
                _ => None,
            };
            let container = Container {
                marked: logfiles::last_marked(&dir),
                record,
                health,
            };
            self.lock().insert(id, container);
        }
    }

    /// Starts a health monitor probing through `runc exec`.
    fn monitor(
        self: &Arc<Self>,
        id: &str,
        check: HealthCheck,
        started: Instant,
    ) -> Option<HealthMonitor> {
        let weak = Arc::downgrade(self);
        let task = id.to_string();
        let probe = move |argv: &[String], timeout: Duration| -> Option<ProbeResult> {
            let inner = weak.upgrade()?;
            if !matches!(inner.state(&task), Some(ProcessState::Running { .. })) {
                return None;
            }
            let pid_file = inner.task_dir(&task).join("health.pid");
            Some(
                match inner.opts.runc.exec(&task, argv, timeout, &pid_file) {
                    Ok(runc::ExecOutcome::Exited { code: 0, output }) => {
                        ProbeResult::Passed(output)
                    }
                    Ok(runc::ExecOutcome::Exited { code, output }) => {
                        ProbeResult::Failed(format!("exit {code}: {}", output.trim()))
                    }
                    Ok(runc::ExecOutcome::TimedOut) => ProbeResult::TimedOut,
                    Err(e) => {
                        ProbeResult::Failed(format!("cannot run the health check: {}", e.chain()))
                    }
                },
            )
        };
        match HealthMonitor::start(id, check, started, probe) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(task = %id, "cannot start the health check: {}", e.chain());
                None
            }
        }
    }

    /// The state of a known task, noticing and recording its end.
    fn state(&self, id: &str) -> Option<ProcessState> {
        let mut tasks = self.lock();
        let container = tasks.get_mut(id)?;
        if let Some(exit) = container.record.exit {
            return Some(ProcessState::Exited(exit.into()));
        }
        let dir = self.task_dir(id);
        let exit = match shim::recorded_exit(&dir) {
            Some(exit) => exit,
            // Running, or just ended and its shim about to say how.
            None if proc_store::is_alive(container.record.identity())
                || proc_store::is_alive(container.record.shim_identity()) =>
            {
                return Some(ProcessState::Running {
                    pid: container.record.pid,
                })
            }
            // Both gone and nothing recorded (the shim was killed): a
            // last look, in case it wrote the file just now.
            None => shim::recorded_exit(&dir).unwrap_or(StoredExit::Unknown),
        };
        let exit = if oom_killed(&container.record.cgroups_path) && is_kill(exit) {
            StoredExit::Oom
        } else {
            exit
        };
        container.record.exit = Some(exit);
        container.health = None;
        // A stopped container keeps no cgroup, as with Docker: runc's state
        // and cgroup go now; the record, logs and rootfs stay until removal.
        if self.opts.runc.state(id).is_some() {
            if let Err(e) = self.opts.runc.delete(id) {
                tracing::warn!(task = %id, "runc delete: {}", e.chain());
            }
        }
        if let Err(e) = record::save(&dir, &container.record) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(task = %id, "cannot save the container record: {}", e.chain());
            }
        }
        Some(ProcessState::Exited(exit.into()))
    }

    /// Blocks until the task is no longer running, up to `limit`.
    fn wait_exit(&self, id: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !matches!(self.state(id), Some(ProcessState::Running { .. })) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Killed by SIGKILL, or exited with 137 (an init that relays it).
fn is_kill(exit: StoredExit) -> bool {
    matches!(exit, StoredExit::Signal(9) | StoredExit::Code(137))
}

/// True when the kernel's OOM killer acted in the container's cgroup:
/// `oom_kill` in cgroup v2's `memory.events` or v1's `memory.oom_control`.
fn oom_killed(cgroups_path: &str) -> bool {
    let Ok(mounts) = super::process::mounts::mounts() else {
        return false;
    };
    oom_killed_under(&mounts, cgroups_path)
}

/// [`oom_killed`] over the cgroup filesystems `mounts`: cgroup2 (pure, or
/// the unified one of a hybrid host) and the v1 `memory` hierarchy.
fn oom_killed_under(mounts: &[super::process::mounts::CgroupMount], cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let files = mounts.iter().filter_map(|m| match &m.v1_options {
        None => Some(m.point.join(relative).join("memory.events")),
        Some(opts) if opts.iter().any(|o| o == "memory") => {
            Some(m.point.join(relative).join("memory.oom_control"))
        }
        Some(_) => None,
    });
    files
        .filter_map(|f| fs::read_to_string(f).ok())
        .any(|text| oom_kills(&text) > 0)
}

/// The `oom_kill N` count of a `memory.events` (v2) or
/// `memory.oom_control` (v1) text; 0 when it has none.
fn oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// The sampler of the containers' outputs; ends with the runtime.
fn mark_logs(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(MARK_EVERY);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut tasks = inner.lock();
        for (id, container) in tasks.iter_mut() {
            let dir = inner.task_dir(id);
            logfiles::mark(id, &dir, &mut container.marked);
        }
    }
}

impl Runtime for ContainerRuntime {
    /// Pulls the task's image when the node lacks it.
    fn prepare(&self, launch: &Launch) -> Result<(), ExecutorError> {
        start::prepare(&self.inner, launch)
    }

    /// Blocks for the pull (when the node lacks the image), the mount and
    /// runc's create and start.
    fn start(&self, launch: &Launch) -> Result<u32, ExecutorError> {
        start::start(&self.inner, launch)
    }

    fn state(&self, task_id: &str) -> Option<ProcessState> {
        self.inner.state(task_id)
    }

    /// The stop signal (the task's, the image's, or SIGTERM), then SIGKILL
    /// to every process after `grace`. Blocks until it ended.
    fn stop(&self, task_id: &str, grace: Duration) -> Result<(), ExecutorError> {
        let signal = match self.inner.lock().get(task_id) {
            Some(c) => c.record.stop_signal,
            None => return Err(ExecutorError::Unknown(task_id.to_string())),
        };
        if !matches!(
            self.inner.state(task_id),
            Some(ProcessState::Running { .. })
        ) {
            return Ok(());
        }
        let runc = &self.inner.opts.runc;
        if let Err(e) = runc.kill(task_id, signal, false) {
            tracing::debug!(task = %task_id, "stop signal: {}", e.chain());
        }
        if self.inner.wait_exit(task_id, grace) {
            return Ok(());
        }
        if let Err(e) = runc.kill(task_id, libc::SIGKILL, true) {
            tracing::debug!(task = %task_id, "SIGKILL: {}", e.chain());
        }
        if self.inner.wait_exit(task_id, KILL_WAIT) {
            return Ok(());
        }
        Err(ExecutorError::Container {
            task: task_id.to_string(),
            message: format!("still running {KILL_WAIT:?} after SIGKILL (stuck in the kernel?)"),
        })
    }

    /// Kills what runs, then deletes runc's state, unmounts the root,
    /// removes the task's directory (logs included) and its anonymous
    /// volumes, and releases its image.
    fn remove(&self, task_id: &str) -> Result<(), ExecutorError> {
        if !self.inner.lock().contains_key(task_id) {
            return Err(ExecutorError::Unknown(task_id.to_string()));
        }
        self.stop(task_id, Duration::ZERO)?;
        start::teardown(&self.inner, task_id);
        let removed = self.inner.lock().remove(task_id);
        if let Some(container) = removed {
            for volume in &container.record.anonymous_volumes {
                if let Err(e) = self.inner.volumes.remove(volume) {
                    tracing::warn!(task = %task_id, "removing anonymous volume {volume}: {}", e.chain());
                }
            }
        }
        let dir = self.inner.task_dir(task_id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ExecutorError::Io {
                task: task_id.to_string(),
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn tasks(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn logs(
        &self,
        task_id: &str,
        stream: Stream,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ExecutorError> {
        let dir = self.known_dir(task_id)?;
        logfiles::read(task_id, &dir, stream, offset, max)
    }

    fn health(&self, task_id: &str) -> Option<Health> {
        self.inner
            .lock()
            .get(task_id)?
            .health
            .as_ref()
            .map(HealthMonitor::health)
    }

    fn log_size(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        let dir = self.known_dir(task_id)?;
        logfiles::size(task_id, &dir, stream)
    }

    fn log_marks(
        &self,
        task_id: &str,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Vec<LogMark>, ExecutorError> {
        let dir = self.known_dir(task_id)?;
        logfiles::covering(task_id, &dir, stream, from, to)
    }
}

impl ContainerRuntime {
    fn known_dir(&self, task_id: &str) -> Result<PathBuf, ExecutorError> {
        if !self.inner.lock().contains_key(task_id) {
            return Err(ExecutorError::Unknown(task_id.to_string()));
        }
        Ok(self.inner.task_dir(task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::super::process::mounts::{parse_mountinfo, CgroupMount};
    use super::*;

    fn write(dir: &std::path::Path, file: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn oom_kill_counts_read_from_memory_events_and_oom_control() {
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(oom_kills("low 0\nmax 4\noom 1\noom_kill 0\n"), 0);
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
        assert_eq!(oom_kills(""), 0);
    }

    #[test]
    fn an_oom_kill_is_found_on_pure_cgroup2() {
        let root = tempfile::tempdir().unwrap();
        let mountinfo = format!(
            "35 24 0:30 / {} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
            root.path().display()
        );
        let mounts = parse_mountinfo(&mountinfo);
        assert_eq!(mounts.len(), 1);
        let cgroup = root.path().join("shoal/t1");
        write(
            &cgroup,
            "memory.events",
            "low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\n",
        );
        assert!(!oom_killed_under(&mounts, "/shoal/t1"), "no kill yet");
        write(
            &cgroup,
            "memory.events",
            "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n",
        );
        assert!(oom_killed_under(&mounts, "/shoal/t1"));
        assert!(!oom_killed_under(&mounts, "/shoal/other"), "another cgroup");
    }

    #[test]
    fn an_oom_kill_is_found_in_the_v1_memory_hierarchy_of_a_hybrid_host() {
        let root = tempfile::tempdir().unwrap();
        let (unified, memory, cpu) = (
            root.path().join("unified"),
            root.path().join("memory"),
            root.path().join("cpu"),
        );
        let mounts = vec![
            CgroupMount {
                point: unified.clone(),
                v1_options: None,
            },
            CgroupMount {
                point: cpu.clone(),
                v1_options: Some(vec!["rw".into(), "cpu".into(), "cpuacct".into()]),
            },
            CgroupMount {
                point: memory.clone(),
                v1_options: Some(vec!["rw".into(), "memory".into()]),
            },
        ];
        // A file named like the v1 one in a hierarchy without the memory
        // controller is not read.
        write(&cpu.join("shoal/t1"), "memory.oom_control", "oom_kill 5\n");
        write(&unified.join("shoal/t1"), "cgroup.procs", "");
        assert!(!oom_killed_under(&mounts, "/shoal/t1"));
        write(
            &memory.join("shoal/t1"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert!(oom_killed_under(&mounts, "/shoal/t1"));
    }
}
