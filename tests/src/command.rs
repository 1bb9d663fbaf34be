//! Runs the external tools the harness is built on (`ip`, `tc`, `nsenter`) and turns a
//! failed run into a `HarnessError` that quotes the command line and its stderr.

use std::{
    ffi::OsStr,
    path::Path,
    process::{Command, Output},
};

use crate::{HarnessError, Result};

/// A command that runs `program` inside the network namespace at `netns`.
///
/// `nsenter --net=` only switches the network namespace; `ip netns exec` would also
/// remount /sys in a private mount namespace and hide bpffs from the program.
pub(crate) fn in_netns(netns: &Path, program: impl AsRef<OsStr>) -> Command {
    let mut enter = OsStr::new("--net=").to_os_string();
    enter.push(netns.as_os_str());
    let mut command = Command::new("nsenter");
    command.arg(enter).arg("--").arg(program);
    command
}

/// Runs `command` to completion and returns its output whatever its exit status.
pub(crate) fn output(command: &mut Command) -> Result<Output> {
    command.output().map_err(|source| HarnessError::Spawn {
        command: describe(command),
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })
}

/// Runs `command` to completion; a non-zero exit is an error quoting its stderr.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    let out = output(command)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(HarnessError::CommandFailed {
            command: describe(command),
            status: out.status,
            stderr: stderr_text(&out),
        })
    }
}

/// Runs `ip` with `args`, failing on a non-zero exit.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(drop)
}

/// The command line as a user would type it, for error messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            if word.is_empty() || word.contains(char::is_whitespace) {
                format!("'{word}'")
            } else {
                word.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The trimmed stderr of `out`, or a note that there was none.
pub(crate) fn stderr_text(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        "no output on stderr".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_words_with_spaces() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo hi", ""]);
        assert_eq!(describe(&command), "sh -c 'echo hi' ''");
    }

    #[test]
    fn in_netns_uses_nsenter_not_ip_netns_exec() {
        let command = in_netns(Path::new("/run/netns/x"), "ping");
        assert_eq!(describe(&command), "nsenter --net=/run/netns/x -- ping");
    }

    #[test]
    fn run_reports_the_command_and_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .expect_err("the script exits 3");
        let message = err.to_string();
        assert!(
            message.contains("sh -c 'echo boom >&2; exit 3'"),
            "{message}"
        );
        assert!(message.contains("boom"), "{message}");
    }
}
