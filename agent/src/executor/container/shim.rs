//! The per-container monitor, `shoal container-shim`: the same binary run
//! once per container, as containerd's shim is. It detaches (a session of
//! its own, no parent-death signal), becomes a child subreaper, has runc
//! create and start the container with the task's log files as its
//! stdout and stderr, tells the agent the container's pid (or runc's
//! error), then waits for the container's init and writes how it ended to
//! `exit.json`. So a container outlives an agent restart and its exit
//! code is still known; the agent keeps no thread per container.

use shoal_control::error_chain::ErrorChain;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};

use super::runc;
use crate::executor::process::store::StoredExit;

/// The first argument that makes `shoal` a shim.
pub const SHIM_ARG: &str = "container-shim";
/// How long runc gets to create or start a container.
const RUNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The files of a container's directory the shim and the runtime share.
pub(crate) fn exit_file(dir: &Path) -> PathBuf {
    dir.join("exit.json")
}

pub(crate) fn runc_log(dir: &Path) -> PathBuf {
    dir.join("runc.log")
}

/// What the shim is told.
#[derive(Clone, Debug)]
pub struct ShimArgs {
    pub runc: PathBuf,
    pub runc_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// The task directory: logs, `init.pid`, `exit.json`, `runc.log`.
    pub dir: PathBuf,
}

impl ShimArgs {
    /// The argv after the binary.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            SHIM_ARG.into(),
            self.runc.clone().into(),
            self.runc_root.clone().into(),
            self.id.clone().into(),
            self.bundle.clone().into(),
            self.dir.clone().into(),
        ]
    }

    fn parse(mut args: impl Iterator<Item = OsString>) -> Option<ShimArgs> {
        Some(ShimArgs {
            runc: args.next()?.into(),
            runc_root: args.next()?.into(),
            id: args.next()?.into_string().ok()?,
            bundle: args.next()?.into(),
            dir: args.next()?.into(),
        })
    }
}

/// Runs the shim when the process was started as one; `None` otherwise.
/// Call it first in `main`, before any thread exists (it forks).
pub fn run_if_shim() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SHIM_ARG {
        return None;
    }
    let Some(shim) = ShimArgs::parse(args) else {
        eprintln!("usage: shoal {SHIM_ARG} RUNC RUNC_ROOT ID BUNDLE DIR");
        return Some(2);
    };
    Some(main(&shim))
}

fn main(args: &ShimArgs) -> i32 {
    let (read_end, write_end) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            println!("err cannot make a pipe: {}", e.chain());
            return 1;
        }
    };
    // SAFETY: the shim is single-threaded here (main has started nothing),
    // so the child may go on running ordinary Rust code.
    match unsafe { fork() } {
        Err(e) => {
            println!("err cannot fork: {}", e.chain());
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(write_end);
            let mut answer = String::new();
            let _ = File::from(read_end).read_to_string(&mut answer);
            let answer = if answer.is_empty() {
                "err the shim died before starting the container".to_string()
            } else {
                answer
            };
            print!("{answer}");
            let _ = std::io::stdout().flush();
            i32::from(!answer.starts_with("ok "))
        }
        Ok(ForkResult::Child) => {
            drop(read_end);
            std::process::exit(monitor(args, write_end))
        }
    }
}

/// The detached half: starts the container, reports (`ok PID SHIM_PID`
/// or `err MESSAGE`), waits, records.
fn monitor(args: &ShimArgs, report: OwnedFd) -> i32 {
    let _ = setsid();
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    detach_stdio();
    let mut report = File::from(report);
    let started = start(args);
    let pid = match started {
        Ok(pid) => {
            let _ = writeln!(report, "ok {pid} {}", std::process::id());
            pid
        }
        Err(message) => {
            let _ = writeln!(report, "err {message}");
            return 1;
        }
    };
    drop(report);
    let exit = wait_for(pid);
    let path = exit_file(&args.dir);
    let tmp = args.dir.join("exit.json.tmp");
    let text = serde_json::to_vec(&exit).unwrap_or_default();
    if fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, &path))
        .is_err()
    {
        return 1;
    }
    0
}

/// Points stdin, stdout and stderr at /dev/null, so the agent's pipe to
/// the foreground half closes.
fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 of an open descriptor onto 0-2.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

fn runc(args: &ShimArgs) -> Command {
    let mut command = Command::new(&args.runc);
    command
        .arg("--root")
        .arg(&args.runc_root)
        .arg("--log")
        .arg(runc_log(&args.dir))
        .arg("--log-format")
        .arg("json");
    command
}

/// Runs a runc command to its end, within [`RUNC_TIMEOUT`].
fn finish(mut command: Command) -> Result<ExitStatus, String> {
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run runc: {}", e.chain()))?;
    let deadline = Instant::now() + RUNC_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("runc took more than {RUNC_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("waiting for runc: {}", e.chain())),
        }
    }
}

fn failure(args: &ShimArgs, step: &str, status: ExitStatus) -> String {
    let why =
        runc::last_error(&runc_log(&args.dir)).unwrap_or_else(|| format!("exit status {status}"));
    format!("runc {step}: {why}")
}

/// `runc create` with the logs as the container's stdio, then `start`.
fn start(args: &ShimArgs) -> Result<i32, String> {
    let log = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(args.dir.join(name))
            .map_err(|e| format!("cannot open {name}: {}", e.chain()))
    };
    let pid_file = args.dir.join("init.pid");
    let _ = fs::remove_file(&pid_file);
    let mut create = runc(args);
    create
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?);
    let status = finish(create)?;
    if !status.success() {
        return Err(failure(args, "create", status));
    }
    let pid = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or_else(|| "runc create wrote no pid".to_string())?;
    let mut start = runc(args);
    start
        .arg("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = finish(start)?;
    if !status.success() {
        let message = failure(args, "start", status);
        let mut delete = runc(args);
        delete.args(["delete", "--force"]).arg(&args.id);
        let _ = finish(delete);
        return Err(message);
    }
    Ok(pid)
}

/// Reaps children (we are their subreaper) until `pid` ends.
fn wait_for(pid: i32) -> StoredExit {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return StoredExit::Code(code),
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => {
                return StoredExit::Signal(signal as i32)
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return StoredExit::Unknown,
        }
    }
}

/// The exit the shim recorded in `dir`, if it has.
pub(crate) fn recorded_exit(dir: &Path) -> Option<StoredExit> {
    let text = fs::read(exit_file(dir)).ok()?;
    serde_json::from_slice(&text).ok()
}
