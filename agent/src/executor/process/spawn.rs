//! Starting a task's process inside its sandbox. Everything the child needs
//! (file descriptors, C strings) is prepared before the fork; between fork
//! and exec the child only makes raw syscalls: join the cgroup, enter the
//! network namespace, take a private mount namespace with the task's own
//! `/etc/resolv.conf`, and start a session of its own.
//!
//! No parent-death signal is set: a task outlives an agent restart and is
//! adopted by the next agent (Docker's live-restore).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::executor::Launch;

/// The `PATH` every task starts with.
pub(crate) const TASK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the task's resolv.conf is bind-mounted, in its mount namespace.
const RESOLV_TARGET: &CStr = c"/etc/resolv.conf";

/// The open files that make a task's sandbox, opened before the fork.
pub(crate) struct Sandbox {
    /// `cgroup.procs` of each of the task's cgroup directories.
    pub cgroup_procs: Vec<File>,
    /// The network namespace (an nsfs file).
    pub netns: File,
    /// The task's resolv.conf, on the host.
    pub resolv_conf: PathBuf,
    pub stdout: File,
    pub stderr: File,
}

/// Starts `launch.command` in `sandbox`; the caller checked the command is
/// not empty. Fails like [`Command::spawn`]: a missing binary is `NotFound`.
pub(crate) fn spawn(launch: &Launch, sandbox: Sandbox) -> io::Result<Child> {
    let (program, args) = launch
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let resolv_source = CString::new(sandbox.resolv_conf.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let procs: Vec<RawFd> = sandbox.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let netns = sandbox.netns.as_raw_fd();

    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", TASK_PATH)
        .env("HOME", "/")
        .envs(env_pairs(&launch.env))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(sandbox.stdout))
        .stderr(Stdio::from(sandbox.stderr));
    let hook = move || -> io::Result<()> {
        for &fd in &procs {
            join_cgroup(fd)?;
        }
        enter_sandbox(netns, &resolv_source)
    };
    // SAFETY: the hook runs in the forked child before exec. It allocates
    // nothing and takes no lock: it reads only the fd numbers and the C
    // string moved into it, prepared here before the fork, and makes raw
    // async-signal-safe syscalls (write, setns, unshare, mount, setsid).
    unsafe {
        command.pre_exec(hook);
    }
    let child = command.spawn();
    // The parent's cgroup and netns fds close only now, after the fork; they
    // are CLOEXEC, so the task never holds them.
    drop(sandbox.cgroup_procs);
    drop(sandbox.netns);
    child
}

/// `KEY=VALUE` entries as pairs. An entry without `=` is left out, as Docker
/// drops a `--env NAME` the client's environment does not define.
pub(crate) fn env_pairs(env: &[String]) -> Vec<(&str, &str)> {
    env.iter()
        .filter_map(|entry| entry.split_once('='))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// Turns a C-style return value into a result, `errno` on failure.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `fd`.
fn join_cgroup(fd: RawFd) -> io::Result<()> {
    let pid = b"0";
    // SAFETY: `pid` is a live 1-byte buffer for the whole call; `fd` is an
    // open descriptor owned by the parent's `Sandbox`, inherited by the child.
    let written = unsafe { libc::write(fd, pid.as_ptr().cast(), pid.len()) };
    match written {
        1 => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::from(io::ErrorKind::WriteZero)),
    }
}

/// Enters the network namespace `netns`, takes a private mount namespace
/// with `resolv_source` bind-mounted on /etc/resolv.conf, and calls setsid.
fn enter_sandbox(netns: RawFd, resolv_source: &CStr) -> io::Result<()> {
    // SAFETY: `netns` is an open nsfs descriptor inherited from the parent;
    // setns reads nothing else from our memory.
    check(unsafe { libc::setns(netns, libc::CLONE_NEWNET) })?;
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // Stop our mounts from propagating back to the host's namespace.
    // SAFETY: the target is a NUL-terminated static string; the null source,
    // type and data are allowed for a propagation change.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: source and target are NUL-terminated strings that outlive the
    // call (the source was built before the fork); type and data are unused
    // by a bind mount.
    check(unsafe {
        libc::mount(
            resolv_source.as_ptr(),
            RESOLV_TARGET.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    // SAFETY: setsid takes no arguments; the child of a fork is never a
    // process group leader, so it cannot fail with EPERM.
    check(unsafe { libc::setsid() })
}

/// True when the host has the file the task's resolv.conf is mounted on.
pub(crate) fn host_has_resolv_conf() -> bool {
    Path::new("/etc/resolv.conf").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_split_at_the_first_equals_sign() {
        let env = vec![
            "A=1".to_string(),
            "B=x=y".to_string(),
            "EMPTY=".to_string(),
            "NOVALUE".to_string(),
            "=nokey".to_string(),
        ];
        assert_eq!(
            env_pairs(&env),
            vec![("A", "1"), ("B", "x=y"), ("EMPTY", "")]
        );
    }
}
