//! Tearing down what the harness created: processes in its namespaces, mounts under its
//! run dirs, the run dirs and the namespaces themselves. Used by `Underlay`'s `Drop` and
//! by `cleanup_leftovers` (`cargo xtask clean`). Every step is attempted even when an
//! earlier one failed, and nothing outside `shoal-*` names is ever touched.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nix::mount::{umount2, MntFlags};

use crate::{
    command, mountinfo, namespace,
    naming::{self, BPF_PINS, CGROUP_ROOT, NETNS_DIR, RUN_ROOT},
    HarnessError, Removed, Result,
};

/// Removes every network namespace named `shoal-*` and every run dir under
/// /run/shoal-test, with the mounts under them and the processes inside them.
///
/// `filter` narrows this to one run or one underlay: it selects names equal to it or
/// continuing it after a `-` (`shoal-t1a2b3c` selects every underlay of that run,
/// `shoal-t1a2b3c-1` only the first). Every step is attempted; if any failed, the error
/// lists the failures and what was removed anyway.
pub fn cleanup_leftovers(filter: Option<&str>) -> Result<Vec<Removed>> {
    let netns = matching_entries(Path::new(NETNS_DIR), filter);
    let run_dirs: Vec<PathBuf> = matching_entries(Path::new(RUN_ROOT), filter)
        .into_iter()
        .map(|name| Path::new(RUN_ROOT).join(name))
        .collect();
    let netns_paths: Vec<PathBuf> = netns.iter().map(|n| Path::new(NETNS_DIR).join(n)).collect();

    let mut teardown = Teardown::default();
    teardown.kill_members(&netns_paths, &run_dirs);
    for dir in &run_dirs {
        teardown.unmount_under(dir);
        teardown.remove_dir(dir);
    }
    for name in &netns {
        teardown.delete_netns(name);
    }
    teardown.remove_cgroups(filter);
    teardown.remove_bpf_pins(filter);
    teardown.finish()
}

/// Where the cgroup2 filesystem is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(point))
        })
        .next()
        .unwrap_or_else(|| PathBuf::from(CGROUP_ROOT))
}

/// Names of the entries of `dir` that are the harness's and match `filter`.
fn matching_entries(dir: &Path, filter: Option<&str>) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| naming::matches_filter(name, filter))
        .collect();
    names.sort();
    names
}

/// Cleanup steps done so far, and those that failed.
#[derive(Debug, Default)]
pub(crate) struct Teardown {
    pub(crate) removed: Vec<Removed>,
    pub(crate) failures: Vec<HarnessError>,
}

impl Teardown {
    /// SIGKILLs every process in the namespaces `netns`, or in a namespace bind-mounted
    /// somewhere under one of `run_dirs`.
    pub(crate) fn kill_members(&mut self, netns: &[PathBuf], run_dirs: &[PathBuf]) {
        let mut namespaces = netns.to_vec();
        match mountinfo::mounts() {
            Ok(mounts) => {
                for dir in run_dirs {
                    namespaces.extend(
                        mountinfo::under(&mounts, dir)
                            .into_iter()
                            .filter(mountinfo::Mount::is_namespace)
                            .map(|mount| mount.mount_point),
                    );
                }
            }
            Err(err) => self.failures.push(err),
        }
        for member in namespace::members(&namespaces) {
            match namespace::sigkill(member.pid) {
                Ok(()) => self.removed.push(Removed::Process {
                    pid: member.pid,
                    comm: member.comm,
                    namespace: member.namespace,
                }),
                Err(err) => self.failures.push(err),
            }
        }
    }

    /// Detaches every mount at or below `dir`, topmost first, and deletes its mount point.
    pub(crate) fn unmount_under(&mut self, dir: &Path) {
        let mounts = match mountinfo::mounts() {
            Ok(mounts) => mounts,
            Err(err) => return self.failures.push(err),
        };
        for mount in mountinfo::under(&mounts, dir) {
            let path = mount.mount_point;
            if let Err(source) = umount2(&path, MntFlags::MNT_DETACH) {
                self.failures.push(HarnessError::Unmount { path, source });
                continue;
            }
            // The mount point may still be covered by another mount; the dir removal
            // below deletes it once it is not.
            let _ = if path.is_dir() {
                fs::remove_dir(&path)
            } else {
                fs::remove_file(&path)
            };
            self.removed.push(Removed::Mount(path));
        }
    }

    /// Deletes `dir` and its contents, unless something is still mounted under it.
    pub(crate) fn remove_dir(&mut self, dir: &Path) {
        if !dir.exists() {
            return;
        }
        match mountinfo::mounts() {
            Ok(mounts) => {
                if let Some(mount) = mountinfo::under(&mounts, dir).into_iter().next() {
                    return self.failures.push(HarnessError::StillMounted {
                        dir: dir.to_owned(),
                        mount: mount.mount_point,
                    });
                }
            }
            Err(err) => return self.failures.push(err),
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => self.removed.push(Removed::Dir(dir.to_owned())),
            Err(source) => self.failures.push(HarnessError::Io {
                action: "remove",
                path: dir.to_owned(),
                source,
            }),
        }
    }

    /// Deletes the network namespace `name` if it still exists.
    pub(crate) fn delete_netns(&mut self, name: &str) {
        if !Path::new(NETNS_DIR).join(name).exists() {
            return;
        }
        match command::ip(&["netns", "del", name]) {
            Ok(()) => self.removed.push(Removed::Netns(name.to_owned())),
            Err(err) => self.failures.push(err),
        }
    }

    /// Removes the routing mesh's pin directories of the harness's agents:
    /// `/sys/fs/bpf/shoal/<run dir, '/' as '_'>`, whose parts name the run.
    /// Unpinning a link detaches its program.
    pub(crate) fn remove_bpf_pins(&mut self, filter: Option<&str>) {
        let Ok(entries) = fs::read_dir(BPF_PINS) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let ours = name.starts_with("run_shoal-test_")
                && name
                    .split('_')
                    .skip(2)
                    .any(|part| naming::matches_filter(part, filter));
            if !ours {
                continue;
            }
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => self.removed.push(Removed::BpfPins(entry.path())),
                Err(source) => self.failures.push(HarnessError::Io {
                    action: "remove the mesh pins",
                    path: entry.path(),
                    source,
                }),
            }
        }
    }

    /// Kills what runs in the harness's task cgroups (`/sys/fs/cgroup/shoal-*`,
    /// one per host, given to its agent with `--cgroup-root`) and deletes
    /// them, deepest first.
    pub(crate) fn remove_cgroups(&mut self, filter: Option<&str>) {
        // The cgroup2 tree holds the processes; on a hybrid host the cgroup
        // v1 hierarchies (cpu, memory) mirror the same paths for limits.
        let mut parents = vec![PathBuf::from(CGROUP_ROOT)];
        if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
            parents.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        let roots: Vec<PathBuf> = parents
            .iter()
            .flat_map(|p| {
                matching_entries(p, filter)
                    .into_iter()
                    .map(move |name| p.join(name))
            })
            .collect();
        for root in roots {
            let _ = fs::write(root.join("cgroup.kill"), "1");
            let mut dirs = vec![root.clone()];
            let mut i = 0;
            while i < dirs.len() {
                if let Ok(entries) = fs::read_dir(&dirs[i]) {
                    dirs.extend(
                        entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
                i += 1;
            }
            for dir in dirs.iter().rev() {
                // A killed cgroup empties asynchronously: retry briefly.
                let mut result = fs::remove_dir(dir);
                for _ in 0..50 {
                    if result.is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    result = fs::remove_dir(dir);
                }
                if let Err(source) = result {
                    self.failures.push(HarnessError::Io {
                        action: "remove",
                        path: dir.clone(),
                        source,
                    });
                }
            }
            self.removed.push(Removed::Cgroup(root));
        }
    }

    /// What was removed, or an error listing what failed.
    pub(crate) fn finish(self) -> Result<Vec<Removed>> {
        if self.failures.is_empty() {
            Ok(self.removed)
        } else {
            Err(HarnessError::CleanupIncomplete {
                removed: self.removed,
                failures: self.failures,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_items_read_as_sentences() {
        let process = Removed::Process {
            pid: 7,
            comm: "sleep".into(),
            namespace: "/run/netns/shoal-t1-1-h1".into(),
        };
        assert_eq!(
            process.to_string(),
            "killed process 7 (sleep) in /run/netns/shoal-t1-1-h1"
        );
        assert_eq!(
            Removed::Netns("shoal-t1-1-h1".into()).to_string(),
            "deleted netns shoal-t1-1-h1"
        );
    }

    #[test]
    fn finish_lists_failures_and_keeps_what_was_removed() {
        let teardown = Teardown {
            removed: vec![Removed::Dir("/run/shoal-test/shoal-t1-1".into())],
            failures: vec![HarnessError::InvalidConfig("boom".into())],
        };
        match teardown.finish() {
            Err(HarnessError::CleanupIncomplete { removed, failures }) => {
                assert_eq!(removed.len(), 1);
                assert_eq!(failures.len(), 1);
            }
            other => panic!("expected CleanupIncomplete, got {other:?}"),
        }
    }
}
