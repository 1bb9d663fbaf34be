//! `HarnessError`: everything that can go wrong while building, driving or tearing down
//! a test underlay. Each message names the command or path involved and, where there is
//! one, the fix.

use std::{io, path::PathBuf, process::ExitStatus};

use shoal_control::error_chain::ErrorChain;

use crate::removed::Removed;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A command the harness relies on (`ip`, `tc`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    /// A command could not be started at all.
    #[error("could not start `{command}` (is `{program}` installed and on PATH?)")]
    Spawn {
        command: String,
        program: String,
        #[source]
        source: io::Error,
    },

    /// A file or directory operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The builder or `impair` was given values the harness cannot honour.
    #[error("invalid harness setting: {0}")]
    InvalidConfig(String),

    /// A spawned process did not get into its host's netns in time.
    #[error(
        "`{command}` did not enter netns {netns} within {seconds}s; the machine may be \
         overloaded, or nsenter is stuck"
    )]
    NetnsEntryTimeout {
        command: String,
        netns: String,
        seconds: u64,
    },

    /// `shoal_bin()` points at a file that does not exist.
    #[error(
        "the shoal binary is not at {}: build it with `cargo build -p shoal-agent --bin shoal`, \
         or point SHOAL_BIN at it",
        path.display()
    )]
    ShoalBinaryMissing { path: PathBuf },

    /// `netem_bin()` points at a file that does not exist, so `impair` cannot start
    /// the relay that emulates loss and delay.
    #[error(
        "the link impairment relay is not at {}: build it with `cargo build -p shoal-tests \
         --bin shoal-netem` (`cargo build --workspace` does too), or point SHOAL_NETEM_BIN at it",
        path.display()
    )]
    NetemBinaryMissing { path: PathBuf },

    /// The impairment relay started but did not say it was forwarding frames in time.
    #[error(
        "`{command}` did not report `ready` within {seconds}s; the host's link stays healed. \
         Its log ends with: {log}"
    )]
    RelayNotReady {
        command: String,
        seconds: u64,
        log: String,
    },

    /// A mount under a run dir could not be detached.
    #[error("could not unmount {}", path.display())]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },

    /// A run dir still has mounts under it, so deleting it could reach into them.
    #[error(
        "refusing to delete {}: {} is still mounted under it; unmount it by hand \
         (`umount -l`) and run `cargo xtask clean` again",
        dir.display(),
        mount.display()
    )]
    StillMounted { dir: PathBuf, mount: PathBuf },

    /// SIGKILL could not be delivered.
    #[error("could not SIGKILL process {pid}")]
    Kill {
        pid: u32,
        #[source]
        source: io::Error,
    },

    /// Some cleanup steps failed; the others were done and are listed in `removed`.
    #[error("cleanup incomplete, {} step(s) failed: {}", failures.len(), join(failures))]
    CleanupIncomplete {
        removed: Vec<Removed>,
        failures: Vec<HarnessError>,
    },
}

fn join(errors: &[HarnessError]) -> String {
    errors
        .iter()
        .map(|e| e.chain().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
