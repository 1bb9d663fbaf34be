//! Finds and kills the processes living in given namespaces (a host's netns, or one an
//! agent bind-mounted under its run dir) by matching the nsfs inode behind each
//! /proc/<pid>/ns/* link. Never matches a namespace this process or PID 1 is in.

use std::{
    collections::HashSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{HarnessError, Result};

/// Identity of a namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NamespaceId {
    dev: u64,
    ino: u64,
}

fn namespace_id(path: &Path) -> Option<NamespaceId> {
    let meta = fs::metadata(path).ok()?;
    Some(NamespaceId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// A process found in one of the namespaces searched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) pid: u32,
    pub(crate) comm: String,
    pub(crate) namespace: PathBuf,
}

/// The namespaces `pid` is in (one per entry of /proc/<pid>/ns).
fn namespaces_of(pid: &str) -> Vec<NamespaceId> {
    let Ok(entries) = fs::read_dir(Path::new("/proc").join(pid).join("ns")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| namespace_id(&entry.path()))
        .collect()
}

/// The processes in any of the namespaces whose files are `namespaces`.
///
/// Namespaces shared with this process or PID 1 are ignored, so a stray bind mount of,
/// say, the root mount namespace can never select every process on the machine.
pub(crate) fn members(namespaces: &[PathBuf]) -> Vec<Member> {
    let shared: HashSet<NamespaceId> = ["self", "1"].into_iter().flat_map(namespaces_of).collect();
    let wanted: Vec<(NamespaceId, &PathBuf)> = namespaces
        .iter()
        .filter_map(|path| Some((namespace_id(path)?, path)))
        .filter(|(id, _)| !shared.contains(id))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let ids = namespaces_of(&pid.to_string());
        if let Some((_, path)) = wanted.iter().find(|(id, _)| ids.contains(id)) {
            found.push(Member {
                pid,
                comm: comm(pid),
                namespace: (*path).clone(),
            });
        }
    }
    found
}

/// Whether `pid` is in the namespace whose file is `namespace`.
pub(crate) fn contains(namespace: &Path, pid: u32) -> bool {
    namespace_id(namespace).is_some_and(|id| namespaces_of(&pid.to_string()).contains(&id))
}

/// The command name of `pid`, or `?` if it is gone.
pub(crate) fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Sends SIGKILL to `pid`; a process that is already gone is not an error.
pub(crate) fn sigkill(pid: u32) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| HarnessError::Kill {
        pid,
        source: std::io::Error::from(Errno::EINVAL),
    })?;
    match kill(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(HarnessError::Kill {
            pid,
            source: errno.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_never_match() {
        let own = PathBuf::from("/proc/self/ns/net");
        assert!(members(&[own]).is_empty());
    }

    #[test]
    fn this_process_is_in_its_own_namespace() {
        let own = Path::new("/proc/self/ns/net");
        assert!(contains(own, std::process::id()));
        assert!(!contains(Path::new("/nonexistent/ns"), std::process::id()));
    }

    #[test]
    fn missing_namespace_files_match_nothing() {
        assert!(members(&[PathBuf::from("/nonexistent/ns")]).is_empty());
    }
}
