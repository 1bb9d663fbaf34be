//! The processes a host's harness started. Each `Child` is kept unreaped until it is
//! killed, so its PID cannot be reused by an unrelated process before we SIGKILL it;
//! stdout and stderr go to a log file whose tail is shown when a test panics.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::{command, namespace, HarnessError, Result};

/// Lines of each log shown when a test panics.
const TAIL_LINES: usize = 40;
/// How long a spawned process may take to get into its netns.
const NETNS_ENTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// A process started by the harness, and where its output goes.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub(crate) pid: u32,
    pub(crate) command: String,
    pub(crate) log: PathBuf,
}

/// Processes started in one host: the live ones, and a record of all of them.
#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    running: Vec<Child>,
    started: Vec<Started>,
}

impl ProcessTable {
    /// Starts `command` with stdin closed and stdout+stderr appended to `log`.
    pub(crate) fn spawn(&mut self, mut command: Command, log: PathBuf) -> Result<u32> {
        let file = File::create(&log).map_err(|source| HarnessError::Io {
            action: "create log file",
            path: log.clone(),
            source,
        })?;
        let file_err = file.try_clone().map_err(|source| HarnessError::Io {
            action: "duplicate handle of log file",
            path: log.clone(),
            source,
        })?;
        command.stdin(Stdio::null()).stdout(file).stderr(file_err);
        let description = command::describe(&command);
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: description.clone(),
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let pid = child.id();
        self.running.push(child);
        self.started.push(Started {
            pid,
            command: description,
            log,
        });
        Ok(pid)
    }

    /// SIGKILLs and reaps every live process; returns what could not be killed.
    pub(crate) fn kill_all(&mut self) -> Vec<HarnessError> {
        let mut failures = Vec::new();
        for mut child in self.running.drain(..) {
            let pid = child.id();
            // Child::kill sends SIGKILL to the PID, which stays ours until wait() reaps it.
            if let Err(source) = child.kill() {
                failures.push(HarnessError::Kill { pid, source });
                continue;
            }
            if let Err(source) = child.wait() {
                failures.push(HarnessError::Kill { pid, source });
            }
        }
        failures
    }

    /// The exit status of `pid` if it is one of ours and has exited (reaping it).
    pub(crate) fn exit_status(&mut self, pid: u32) -> Option<ExitStatus> {
        let child = self.running.iter_mut().find(|child| child.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// Every process ever started here, in start order.
    pub(crate) fn started(&self) -> &[Started] {
        &self.started
    }
}

/// Starts `command` (an `nsenter --net=<netns>` command) as a tracked process of
/// `table` logging to `log`, and waits until nsenter has entered `netns` and exec'd the
/// program, or the program has exited. If it cannot be started (say, it does not exist)
/// the error quotes nsenter's complaint.
pub(crate) fn start_in_netns(
    table: &mut ProcessTable,
    command: Command,
    log: PathBuf,
    netns: &Path,
) -> Result<u32> {
    let description = command::describe(&command);
    let pid = table.spawn(command, log.clone())?;
    let deadline = Instant::now() + NETNS_ENTRY_TIMEOUT;
    loop {
        if namespace::contains(netns, pid) && runs_program(pid) {
            return Ok(pid);
        }
        match table.exit_status(pid) {
            Some(status) if status.success() => return Ok(pid),
            Some(status) => {
                return Err(HarnessError::CommandFailed {
                    command: description,
                    status,
                    stderr: tail(&log),
                })
            }
            None if Instant::now() >= deadline => {
                return Err(HarnessError::NetnsEntryTimeout {
                    command: description,
                    netns: netns
                        .file_name()
                        .unwrap_or(netns.as_os_str())
                        .to_string_lossy()
                        .into_owned(),
                    seconds: NETNS_ENTRY_TIMEOUT.as_secs(),
                })
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Whether `pid` has exec'd the program nsenter was asked to run: it runs an
/// executable other than nsenter. A process that is exiting (nsenter failing to
/// exec the program) has no executable left to read, and does not count.
pub(crate) fn runs_program(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.file_name().is_some_and(|name| name != "nsenter"))
}

/// The last `TAIL_LINES` lines of `log`, or why it could not be read.
pub(crate) fn tail(log: &Path) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(TAIL_LINES);
            if lines.is_empty() {
                "(empty)".to_owned()
            } else {
                lines[start..].join("\n")
            }
        }
        Err(err) => format!("(could not read {}: {err})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_processes_log_and_are_killed() {
        let dir = std::env::temp_dir().join(format!("shoal-process-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let log = dir.join("sh.log");
        let mut table = ProcessTable::default();
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec sleep 1000"]);
        let pid = table.spawn(command, log.clone()).expect("sh starts");

        let mut waited = 0;
        while !tail(&log).contains("started") && waited < 50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            waited += 1;
        }
        assert_eq!(tail(&log), "started");
        assert!(Path::new(&format!("/proc/{pid}")).exists());

        assert!(table.kill_all().is_empty());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
        assert_eq!(table.started().len(), 1);
        std::fs::remove_dir_all(&dir).expect("temp dir is removable");
    }
}
