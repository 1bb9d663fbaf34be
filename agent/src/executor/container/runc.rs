//! runc, the low-level runtime, driven through its command line (the
//! interface its authors keep stable): `create` and `start` (by the shim),
//! `state`, `kill`, `delete`, `exec` (health checks). Each container's
//! state lives under the agent's own `--root`, away from other runtimes.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The runc binary and the agent's state root for it.
#[derive(Clone, Debug)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// `runc state`'s answer, the part we read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RuncState {
    /// `created`, `running`, `paused`, `stopped`.
    pub status: String,
    pub pid: i64,
}

/// How a probe run by `exec` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecOutcome {
    Exited { code: i32, output: String },
    TimedOut,
}

/// The most output a health probe keeps.
const MAX_PROBE_OUTPUT: u64 = 4096;
const POLL: Duration = Duration::from_millis(20);

impl Runc {
    /// Finds `runc` in PATH (or the usual sbin directories).
    pub fn find(root: PathBuf) -> Option<Runc> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
        for dir in dirs {
            let candidate = dir.join("runc");
            if candidate.is_file() {
                return Some(Runc {
                    binary: candidate,
                    root,
                });
            }
        }
        None
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> io::Result<String> {
        let out = self.command().args(args).output()?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(io::Error::other(format!(
            "runc {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// The container's state; `None` when runc does not know it.
    pub fn state(&self, id: &str) -> Option<RuncState> {
        let text = self.run(&["state", id]).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Sends `signal` to the container's init (`all`: to every process).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> io::Result<()> {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.run(&args).map(drop)
    }

    /// Removes what runc keeps of the container (killing it if needed).
    pub fn delete(&self, id: &str) -> io::Result<()> {
        self.run(&["delete", "--force", id]).map(drop)
    }

    /// Runs `args` in the container (its user, env, namespaces, caps and
    /// seccomp), killing it after `timeout`. `pid_file` receives the
    /// process's host pid, so a timed-out probe can be killed.
    pub fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
        pid_file: &Path,
    ) -> io::Result<ExecOutcome> {
        let _ = std::fs::remove_file(pid_file);
        let mut child = self
            .command()
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut output = String::new();
                if let Some(out) = child.stdout.take() {
                    let _ = out.take(MAX_PROBE_OUTPUT).read_to_string(&mut output);
                }
                if let Some(err) = child.stderr.take() {
                    let _ = err.take(MAX_PROBE_OUTPUT).read_to_string(&mut output);
                }
                let code = status.code().unwrap_or(-1);
                return Ok(ExecOutcome::Exited { code, output });
            }
            if Instant::now() >= deadline {
                // The probe itself first (runc exec would only forward a
                // catchable signal), then runc.
                if let Some(pid) = std::fs::read_to_string(pid_file)
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                return Ok(ExecOutcome::TimedOut);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The last error runc wrote to its JSON log (`--log-format json`).
pub fn last_error(log: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_of_runcs_log() {
        let dir = tempfile::TempDir::new().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\"}\nnot json\n",
        )
        .unwrap();
        assert_eq!(
            last_error(&log).as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
        assert_eq!(last_error(&dir.path().join("missing")), None);
    }
}
