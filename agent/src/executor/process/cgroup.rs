//! The cgroups of the process runtime: a root directory on the cgroup2
//! filesystem holding one child per task, with the task's CPU and memory
//! limits, and the means to signal, kill and count what runs in it.
//!
//! On a pure cgroup v2 host everything lives under that root. On a hybrid
//! host, where `cpu` or `memory` are still bound to a cgroup v1 hierarchy,
//! the v2 directory tracks and kills the processes and the same relative
//! path in that v1 hierarchy holds the limit, the layout systemd uses.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use shoal_control::error_chain::ErrorChain;

use super::mounts::{cgroup2_mount, mounts};
use crate::executor::ExecutorError;

/// The CFS period every task gets, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts, in microseconds.
const CPU_MIN_QUOTA_US: u64 = 1_000;
/// How often a wait re-reads `cgroup.events`.
const POLL: Duration = Duration::from_millis(10);
/// How long `rmdir` of a task cgroup is retried while it drains.
const RMDIR_RETRY: Duration = Duration::from_secs(2);

/// Where a controller's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placement {
    /// In the cgroup2 directories.
    V2,
    /// In a cgroup v1 hierarchy: the runtime root's mirror there.
    V1(PathBuf),
    /// Not available on this host: limits on it are refused.
    Missing,
}

/// The runtime's cgroup root, set up and ready for task cgroups.
#[derive(Clone, Debug)]
pub(crate) struct CgroupTree {
    root: PathBuf,
    cpu: Placement,
    memory: Placement,
}

/// One task's cgroup, in every hierarchy it has a directory in.
#[derive(Clone, Debug)]
pub(crate) struct TaskCgroup {
    task: String,
    unified: PathBuf,
    cpu: Placement,
    memory: Placement,
}

impl CgroupTree {
    /// Creates `root` if missing and enables `cpu` and `memory` for its
    /// children, in it and in every ancestor up to the cgroup2 mount. The root
    /// itself never holds processes (cgroup v2's "no internal processes"
    /// rule): only its task children do.
    pub fn open(root: &Path) -> Result<CgroupTree, ExecutorError> {
        let setup = |source: io::Error| ExecutorError::Setup {
            path: root.to_path_buf(),
            source,
        };
        let mounts = mounts().map_err(setup)?;
        let Some(v2) = mounts
            .iter()
            .filter(|m| m.v1_options.is_none() && root.starts_with(&m.point))
            .max_by_key(|m| m.point.as_os_str().len())
        else {
            return Err(setup(io::Error::other(format!(
                "not on a cgroup2 filesystem; pass a directory under {}",
                cgroup2_mount().map_or("a cgroup2 mount".into(), |p| p.display().to_string())
            ))));
        };
        let relative = root
            .strip_prefix(&v2.point)
            .map_err(io::Error::other)
            .map_err(setup)?;
        let on_v2 = read(&v2.point.join("cgroup.controllers")).map_err(setup)?;
        let on_v2: Vec<&str> = on_v2.split_whitespace().collect();
        let place = |name: &str| {
            if on_v2.contains(&name) {
                return Placement::V2;
            }
            mounts
                .iter()
                .find(|m| {
                    m.v1_options
                        .as_ref()
                        .is_some_and(|c| c.iter().any(|c| c == name))
                })
                .map_or(Placement::Missing, |m| {
                    Placement::V1(m.point.join(relative))
                })
        };
        let tree = CgroupTree {
            root: root.to_path_buf(),
            cpu: place("cpu"),
            memory: place("memory"),
        };

        fs::create_dir_all(root).map_err(setup)?;
        let wanted: Vec<&str> = [("cpu", &tree.cpu), ("memory", &tree.memory)]
            .into_iter()
            .filter(|(_, p)| **p == Placement::V2)
            .map(|(name, _)| name)
            .collect();
        let mut dir = v2.point.clone();
        enable_controllers(&dir, &wanted)?;
        for part in relative.components() {
            dir.push(part);
            enable_controllers(&dir, &wanted)?;
        }
        for placement in [&tree.cpu, &tree.memory] {
            if let Placement::V1(dir) = placement {
                fs::create_dir_all(dir).map_err(|source| ExecutorError::Setup {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(tree)
    }

    /// The cgroup of task `task` (not created yet).
    pub fn task(&self, task: &str) -> TaskCgroup {
        let child = |p: &Placement| match p {
            Placement::V1(dir) => Placement::V1(dir.join(task)),
            other => other.clone(),
        };
        TaskCgroup {
            task: task.to_string(),
            unified: self.root.join(task),
            cpu: child(&self.cpu),
            memory: child(&self.memory),
        }
    }
}

/// Writes `+name` for each of `wanted` missing from `dir`'s subtree_control.
fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<(), ExecutorError> {
    let control = dir.join("cgroup.subtree_control");
    let setup = |source: io::Error| ExecutorError::Setup {
        path: control.clone(),
        source,
    };
    let enabled = read(&control).map_err(setup)?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|name| !enabled.split_whitespace().any(|e| e == **name))
        .map(|name| format!("+{name}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&control, &missing.join(" ")).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            setup(io::Error::other(format!(
                "cannot enable {}: this cgroup holds processes, and cgroup v2 gives \
                 controllers only to children of a cgroup without processes; choose a \
                 cgroup root whose ancestors hold none",
                missing.join(" ")
            )))
        } else {
            setup(e)
        }
    })
}

impl TaskCgroup {
    /// Creates the task's directories and writes its limits (0 = none).
    pub fn create(&self, nano_cpus: u64, memory: u64) -> Result<(), ExecutorError> {
        for dir in self.dirs() {
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(self.error(&dir, e));
                }
                _ => {}
            }
        }
        match &self.cpu {
            Placement::V2 => self.set(&self.unified.join("cpu.max"), &cpu_max(nano_cpus))?,
            Placement::V1(dir) => {
                self.set(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                let quota = cpu_quota_us(nano_cpus).map_or("-1".into(), |q| q.to_string());
                self.set(&dir.join("cpu.cfs_quota_us"), &quota)?;
            }
            Placement::Missing if nano_cpus > 0 => return Err(self.missing("cpu")),
            Placement::Missing => {}
        }
        match &self.memory {
            Placement::V2 => {
                self.set(&self.unified.join("memory.max"), &memory_max(memory))?;
                let swap = self.unified.join("memory.swap.max");
                if swap.exists() {
                    self.set(&swap, if memory > 0 { "0" } else { "max" })?;
                }
            }
            Placement::V1(dir) => {
                // memsw (memory + swap) may never be below the memory limit:
                // lift it first, then set both to the limit so no swap is used.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let limit = if memory > 0 {
                    memory.to_string()
                } else {
                    "-1".into()
                };
                if memsw.exists() {
                    self.set(&memsw, "-1")?;
                }
                self.set(&dir.join("memory.limit_in_bytes"), &limit)?;
                if memsw.exists() {
                    self.set(&memsw, &limit)?;
                }
            }
            Placement::Missing if memory > 0 => return Err(self.missing("memory")),
            Placement::Missing => {}
        }
        Ok(())
    }

    /// Opens `cgroup.procs` of every directory, for the child to write "0"
    /// into (joining the cgroup) before it runs the task's command.
    pub fn open_procs(&self) -> Result<Vec<File>, ExecutorError> {
        self.dirs()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| self.error(&path, e))
            })
            .collect()
    }

    /// True while any process is in the cgroup; a missing cgroup is empty.
    pub fn populated(&self) -> Result<bool, ExecutorError> {
        let path = self.unified.join("cgroup.events");
        match read(&path) {
            Ok(events) => Ok(events.lines().any(|l| l == "populated 1")),
            // Gone, or removed while open (ENODEV): a released cgroup.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error(&path, e)),
        }
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: Signal) -> Result<(), ExecutorError> {
        let path = self.unified.join("cgroup.procs");
        let procs = match read(&path) {
            Ok(procs) => procs,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENODEV) =>
            {
                return Ok(())
            }
            Err(e) => return Err(self.error(&path, e)),
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // A process that exited meanwhile (ESRCH) is what we want anyway.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        Ok(())
    }

    /// SIGKILLs everything in the cgroup at once (`cgroup.kill`).
    pub fn kill(&self) -> Result<(), ExecutorError> {
        let path = self.unified.join("cgroup.kill");
        match write(&path, "1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.unified.exists() => Ok(()),
            // Kernels before 5.14 have no cgroup.kill.
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.signal_all(Signal::SIGKILL),
            Err(e) => Err(self.error(&path, e)),
        }
    }

    /// SIGKILLs everything and waits up to `limit` for the cgroup to empty.
    pub fn kill_and_wait(&self, limit: Duration) -> Result<(), ExecutorError> {
        self.kill()?;
        if self.wait_empty(limit)? {
            return Ok(());
        }
        Err(self.error(
            &self.unified,
            io::Error::other(format!(
                "processes remain {} ms after cgroup.kill (stuck in the kernel?)",
                limit.as_millis()
            )),
        ))
    }

    /// Waits up to `limit` for the cgroup to hold no process; true if it
    /// emptied.
    pub fn wait_empty(&self, limit: Duration) -> Result<bool, ExecutorError> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.populated()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills what the task left and removes its directories: a finished
    /// task keeps no cgroup, only its record and logs.
    pub fn release(&self) {
        let released = self.kill().and_then(|()| self.remove());
        if let Err(e) = released {
            tracing::warn!("cannot remove the cgroup of a finished task: {}", e.chain());
        }
    }

    /// Removes the task's directories, retrying while they drain.
    pub fn remove(&self) -> Result<(), ExecutorError> {
        for dir in self.dirs().into_iter().rev() {
            let deadline = Instant::now() + RMDIR_RETRY;
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(POLL);
                    }
                    Err(e) => return Err(self.error(&dir, e)),
                }
            }
        }
        Ok(())
    }

    pub fn task_id(&self) -> &str {
        &self.task
    }

    /// The cgroup2 directory first, then the v1 ones.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.unified.clone()];
        for placement in [&self.cpu, &self.memory] {
            if let Placement::V1(dir) = placement {
                if !dirs.contains(dir) {
                    dirs.push(dir.clone());
                }
            }
        }
        dirs
    }

    fn set(&self, path: &Path, value: &str) -> Result<(), ExecutorError> {
        write(path, value).map_err(|e| self.error(path, e))
    }

    fn error(&self, path: &Path, source: io::Error) -> ExecutorError {
        ExecutorError::Cgroup {
            task: self.task.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn missing(&self, controller: &str) -> ExecutorError {
        self.error(
            &self.unified,
            io::Error::other(format!(
                "a {controller} limit was asked for but this host has no {controller} \
                 cgroup controller (neither in cgroup v2 nor in a v1 hierarchy)"
            )),
        )
    }
}

/// `cpu.max` for a limit in nano-CPUs: "QUOTA PERIOD", or "max PERIOD".
pub(crate) fn cpu_max(nano_cpus: u64) -> String {
    match cpu_quota_us(nano_cpus) {
        Some(quota) => format!("{quota} {CPU_PERIOD_US}"),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// The CFS quota per period for a limit in nano-CPUs, at least the kernel's
/// 1 ms minimum; `None` for no limit.
pub(crate) fn cpu_quota_us(nano_cpus: u64) -> Option<u64> {
    (nano_cpus > 0).then(|| (nano_cpus / (1_000_000_000 / CPU_PERIOD_US)).max(CPU_MIN_QUOTA_US))
}

/// `memory.max` for a limit in bytes.
pub(crate) fn memory_max(bytes: u64) -> String {
    if bytes == 0 {
        "max".into()
    } else {
        bytes.to_string()
    }
}

fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

/// Writes a cgroup file in one `write`, never creating it.
fn write(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_from_nano_cpus() {
        assert_eq!(cpu_max(0), "max 100000");
        assert_eq!(cpu_max(1_000_000_000), "100000 100000");
        assert_eq!(cpu_max(500_000_000), "50000 100000");
        assert_eq!(cpu_max(2_500_000_000), "250000 100000");
        // Below the kernel's 1 ms minimum quota: clamped, not refused.
        assert_eq!(cpu_max(1_000_000), "1000 100000");
        assert_eq!(cpu_quota_us(0), None);
    }

    #[test]
    fn memory_max_from_bytes() {
        assert_eq!(memory_max(0), "max");
        assert_eq!(memory_max(64 << 20), "67108864");
    }

    #[test]
    fn task_cgroup_mirrors_v1_placement() {
        let tree = CgroupTree {
            root: "/cg/unified/shoal".into(),
            cpu: Placement::V2,
            memory: Placement::V1("/cg/memory/shoal".into()),
        };
        let task = tree.task("t1");
        assert_eq!(
            task.dirs(),
            vec![
                PathBuf::from("/cg/unified/shoal/t1"),
                PathBuf::from("/cg/memory/shoal/t1")
            ]
        );
    }
}
