//! What cleanup removed, for the caller (and the errors) to print.

use std::{fmt, path::PathBuf};

/// Something cleanup removed, for the caller to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A process still running in one of the harness's namespaces, SIGKILLed.
    Process {
        pid: u32,
        comm: String,
        namespace: PathBuf,
    },
    /// A mount under a run dir, detached and its mount point deleted.
    Mount(PathBuf),
    /// A run dir, deleted with everything in it.
    Dir(PathBuf),
    /// A network namespace, deleted with `ip netns del`.
    Netns(String),
    /// A cgroup an agent made for its tasks, emptied and deleted.
    Cgroup(PathBuf),
    /// An agent's routing-mesh pins (maps and links) under bpffs.
    BpfPins(PathBuf),
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removed::Process {
                pid,
                comm,
                namespace,
            } => write!(
                f,
                "killed process {pid} ({comm}) in {}",
                namespace.display()
            ),
            Removed::Mount(path) => write!(f, "unmounted {}", path.display()),
            Removed::Dir(path) => write!(f, "removed {}", path.display()),
            Removed::Netns(name) => write!(f, "deleted netns {name}"),
            Removed::Cgroup(path) => write!(f, "removed cgroup {}", path.display()),
            Removed::BpfPins(path) => write!(f, "removed bpf pins {}", path.display()),
        }
    }
}
