//! Running child processes: echo the command, run it, and turn a failed exit
//! into an error that names the command.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `cmd` with inherited stdio after printing it; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("+ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout if it exits 0, `None` if it could
/// not start or failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `prog arg arg`, for messages.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Whether this process runs as root (effective uid 0), read from
/// `/proc/self/status` so the xtask needs no libc.
pub fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status to check for root")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective uid in /proc/self/status")?;
    Ok(euid == "0")
}
