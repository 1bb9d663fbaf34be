//! Starting one container: the image (pulled if the node lacks it), the
//! overlay root, the process by Docker's rules, the task's files and
//! mounts, the bundle, then the shim that has runc create and start it.
//! Whatever fails leaves nothing behind: the root unmounted, the image
//! released, the directory of a task that never ran removed.

use crate::executor::task_files::{self, Layout};
use shoal_control::error_chain::ErrorChain;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use super::record::{self, ContainerRecord};
use super::shim::{self, ShimArgs};
use super::spec::{self, HostMount, SpecInput};
use super::{
    caps, files, process, rootfs, seccomp, Container, ContainerConfig, Inner, Mount, MAX_ID_FILE,
};
use crate::executor::process::store as proc_store;
use crate::executor::{logfiles, ExecutorError, Launch, ProcessState};
use crate::image::{ImageRecord, Reference};

/// A task id names a directory, a cgroup and a runc container.
fn check_task_id(id: &str) -> Result<(), ExecutorError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ExecutorError::InvalidTaskId(id.to_string()))
    }
}

/// Releases the id when the start ends, however it ends.
struct Starting<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.inner
            .starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// The task's secrets and configs (a tmpfs), in its directory.
const TASK_FILES_DIR: &str = "files";

pub(super) fn start(inner: &Arc<Inner>, launch: &Launch) -> Result<u32, ExecutorError> {
    let id = &launch.task_id;
    check_task_id(id)?;
    let Some(container) = &launch.container else {
        return Err(ExecutorError::Container {
            task: id.clone(),
            message: "a container task needs an image".into(),
        });
    };
    let named_volumes = named_volumes(&container.mounts);
    {
        let mut starting = inner.starting.lock().unwrap_or_else(|e| e.into_inner());
        if starting.contains_key(id) {
            return Err(ExecutorError::Container {
                task: id.clone(),
                message: "it is already being started".into(),
            });
        }
        starting.insert(id.clone(), named_volumes);
    }
    let _starting = Starting {
        inner,
        id: id.clone(),
    };
    match inner.state(id) {
        Some(ProcessState::Running { pid }) => return Ok(pid),
        // Started again after it ended: what runc and the mount kept of
        // the old one goes first.
        Some(ProcessState::Exited(_)) => {
            teardown(inner, id);
            if let Some(old) = inner.lock().remove(id) {
                for volume in &old.record.anonymous_volumes {
                    let _ = inner.volumes.remove(volume);
                }
            }
        }
        None => {}
    }
    let image = image_for(inner, id, container)?;
    let dir = inner.task_dir(id);
    let fresh = !dir.exists();
    let result = launch_in(inner, launch, container, &image, &dir);
    if result.is_err() {
        teardown(inner, id);
        if fresh {
            let _ = fs::remove_dir_all(&dir);
        }
    }
    result
}

/// Pulls the image of `launch` when the node lacks it.
pub(super) fn prepare(inner: &Inner, launch: &Launch) -> Result<(), ExecutorError> {
    let Some(container) = &launch.container else {
        return Ok(());
    };
    find_or_pull(inner, &launch.task_id, container).map(drop)
}

/// The image GC policy, applied as each task takes its image (after any
/// pull): unused images go, least recently used first, when the store's
/// disk is over the high mark. The task's own image is acquired first, so
/// it is never a victim.
fn collect_garbage(inner: &Inner) {
    match inner.images.collect_garbage(&inner.opts.gc) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!("image gc removed {} unused image(s)", removed.len());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("image gc: {}", e.chain()),
    }
}

/// The task's image, pulled when the node lacks it, and kept for it.
fn image_for(
    inner: &Inner,
    id: &str,
    container: &ContainerConfig,
) -> Result<ImageRecord, ExecutorError> {
    let record = find_or_pull(inner, id, container)?;
    inner
        .images
        .acquire(id, &record.id)
        .map_err(|source| ExecutorError::Image {
            task: id.to_string(),
            image: container.image.clone(),
            source: Box::new(source),
        })?;
    collect_garbage(inner);
    Ok(record)
}

fn find_or_pull(
    inner: &Inner,
    id: &str,
    container: &ContainerConfig,
) -> Result<ImageRecord, ExecutorError> {
    let image_err = |source| ExecutorError::Image {
        task: id.to_string(),
        image: container.image.clone(),
        source: Box::new(source),
    };
    let reference = Reference::parse(&container.image).map_err(image_err)?;
    let record = match inner.images.lookup(&reference) {
        Some(found) => found,
        None => inner
            .handle
            .block_on(
                inner
                    .images
                    .pull(&reference, &container.credentials, &|_| {}),
            )
            .map_err(image_err)?,
    };
    Ok(record)
}

fn mkdir(task: &str, dir: &Path, mode: u32) -> Result<(), ExecutorError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| ExecutorError::Io {
            task: task.to_string(),
            path: dir.to_path_buf(),
            source,
        })
}

fn write_file(task: &str, path: &Path, content: &str) -> Result<(), ExecutorError> {
    let io_err = |source| ExecutorError::Io {
        task: task.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(io_err)?;
    io::Write::write_all(&mut file, content.as_bytes()).map_err(io_err)
}

fn container_err(task: &str, message: impl Into<String>) -> ExecutorError {
    ExecutorError::Container {
        task: task.to_string(),
        message: message.into(),
    }
}

fn launch_in(
    inner: &Arc<Inner>,
    launch: &Launch,
    container: &ContainerConfig,
    image: &ImageRecord,
    dir: &Path,
) -> Result<u32, ExecutorError> {
    let id = launch.task_id.as_str();
    mkdir(id, dir, 0o700)?;
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &root] {
        mkdir(id, d, 0o755)?;
    }
    let image_err = |source| ExecutorError::Image {
        task: id.to_string(),
        image: container.image.clone(),
        source: Box::new(source),
    };
    let config = inner.images.config(&image.id).map_err(image_err)?;
    let (layers_dir, mut links) = inner.images.layer_links(&image.id).map_err(image_err)?;
    if links.is_empty() {
        // overlayfs needs a lower layer: an empty one for an empty image.
        let empty = dir.join("empty");
        mkdir(id, &empty, 0o755)?;
        links.push(empty);
    }
    if !rootfs::is_mounted(&root) {
        rootfs::mount_overlay(&layers_dir, &links, &upper, &work, &root).map_err(|source| {
            ExecutorError::Io {
                task: id.to_string(),
                path: root.clone(),
                source,
            }
        })?;
    }
    let read_id_file = |path: &str| {
        rootfs::read_in_root(&root, path, MAX_ID_FILE).map_err(|source| ExecutorError::Io {
            task: id.to_string(),
            path: root.join(path.trim_start_matches('/')),
            source,
        })
    };
    let (passwd, group) = (read_id_file("/etc/passwd")?, read_id_file("/etc/group")?);
    let hostname = if container.hostname.is_empty() {
        files::default_hostname(id)
    } else {
        container.hostname.clone()
    };
    let mut named = container.clone();
    named.hostname = hostname.clone();
    let plan = process::plan(
        &config.config,
        &launch.command,
        &launch.env,
        &named,
        &passwd,
        &group,
    )
    .map_err(|m| container_err(id, m))?;
    let caps =
        caps::resolve(&container.cap_add, &container.cap_drop).map_err(|m| container_err(id, m))?;
    let (resolv_conf, hosts, hostname_file) = (
        dir.join("resolv.conf"),
        dir.join("hosts"),
        dir.join("hostname"),
    );
    write_file(id, &resolv_conf, &launch.resolv_conf)?;
    write_file(
        id,
        &hosts,
        &files::hosts(&hostname, &container.addresses, &container.extra_hosts),
    )?;
    write_file(id, &hostname_file, &files::hostname(&hostname))?;
    let (mut mounts, anonymous_volumes) = host_mounts(inner, id, &root, &container.mounts)?;
    // Secrets and configs: a tmpfs of the task's, each file bound
    // read-only at its target (never a bind the user asked for, so the
    // agent's own paths stay refused above).
    let made = task_files::make(
        &dir.join(TASK_FILES_DIR),
        &launch.secrets,
        &launch.configs,
        Layout::ByIndex,
    )
    .map_err(|e| container_err(id, format!("secrets and configs: {}", e.chain())))?;
    mounts.extend(made.into_iter().map(|f| HostMount::Bind {
        source: f.host,
        target: f.target,
        read_only: true,
    }));
    let init = if container.init {
        Some(inner.opts.init_binary.clone().ok_or_else(|| {
            container_err(
                id,
                "`--init` needs an init binary on the node: apt-get install tini",
            )
        })?)
    } else {
        None
    };
    let cgroups_path = inner.cgroups_path(id);
    let input = SpecInput {
        plan: &plan,
        caps: &caps,
        seccomp: seccomp::profile(&caps, &inner.target),
        hostname: &hostname,
        netns: &launch.netns,
        cgroups_path: &cgroups_path,
        read_only: container.read_only,
        limit_nano_cpus: launch.limit_nano_cpus,
        limit_memory: launch.limit_memory,
        pids_limit: container.pids_limit,
        resolv_conf: &resolv_conf,
        hosts: &hosts,
        hostname_file: &hostname_file,
        init: init.as_deref(),
        mounts: &mounts,
    };
    let config_json = serde_json::to_string_pretty(&spec::runtime_spec(&input))
        .map_err(|e| container_err(id, format!("cannot write the OCI spec: {}", e.chain())))?;
    write_file(id, &dir.join("config.json"), &config_json)?;
    for stale in [shim::exit_file(dir), shim::runc_log(dir)] {
        let _ = fs::remove_file(stale);
    }
    for log in ["stdout.log", "stderr.log"] {
        // Created here, private, so the shim only appends.
        let path = dir.join(log);
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| ExecutorError::Io {
                task: id.to_string(),
                path,
                source,
            })?;
    }
    let started = Instant::now();
    let (pid, shim_pid) = run_shim(inner, id, dir)?;
    // A container that already ended has no start time to read: its
    // shim has (or soon will have) its exit.
    let start_time = proc_store::proc_stat(pid).map_or(0, |s| s.start_time);
    let shim_start_time = proc_store::proc_stat(shim_pid).map_or(0, |s| s.start_time);
    let record = ContainerRecord {
        task_id: id.to_string(),
        image: image.id.clone(),
        pid,
        start_time,
        shim_pid,
        shim_start_time,
        stop_signal: plan.stop_signal,
        cgroups_path,
        health: plan.health.clone(),
        anonymous_volumes,
        named_volumes: named_volumes(&container.mounts),
        exit: None,
    };
    if let Err(source) = record::save(dir, &record) {
        let _ = inner.opts.runc.delete(id);
        return Err(ExecutorError::Io {
            task: id.to_string(),
            path: record::path(dir),
            source,
        });
    }
    let health = plan
        .health
        .clone()
        .and_then(|check| inner.monitor(id, check, started));
    inner.lock().insert(
        id.to_string(),
        Container {
            marked: logfiles::last_marked(dir),
            record,
            health,
        },
    );
    Ok(pid)
}

/// The names of the named volumes among `mounts`.
fn named_volumes(mounts: &[Mount]) -> Vec<String> {
    mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Volume { name, .. } if !name.is_empty() => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Binds, volumes (created on first use) and tmpfs, refusing sources in
/// the agent's protected paths. Returns them and the anonymous volumes
/// made for the task.
fn host_mounts(
    inner: &Inner,
    id: &str,
    root: &Path,
    mounts: &[Mount],
) -> Result<(Vec<HostMount>, Vec<String>), ExecutorError> {
    let mut resolved = Vec::new();
    let mut anonymous = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        if !mount.target().starts_with('/') {
            return Err(container_err(
                id,
                format!("mount target `{}` is not an absolute path", mount.target()),
            ));
        }
        resolved.push(match mount {
            Mount::Bind {
                source,
                target,
                read_only,
            } => {
                let source = fs::canonicalize(source).map_err(|e| {
                    container_err(id, format!("bind source {}: {e}", source.display()))
                })?;
                if let Some(p) = inner.opts.protected.iter().find(|p| source.starts_with(p) || p.starts_with(&source)) {
                    return Err(container_err(
                        id,
                        format!(
                            "bind source {} would expose {}, which belongs to the agent; bind another path",
                            source.display(),
                            p.display()
                        ),
                    ));
                }
                HostMount::Bind {
                    source,
                    target: target.clone(),
                    read_only: *read_only,
                }
            }
            Mount::Volume {
                name,
                target,
                read_only,
            } => {
                let name = if name.is_empty() {
                    let generated = format!("{id}-anon-{i}");
                    anonymous.push(generated.clone());
                    generated
                } else {
                    name.clone()
                };
                let (data, created) = inner
                    .volumes
                    .ensure(&name)
                    .map_err(|e| container_err(id, format!("volume {name}: {}", e.chain())))?;
                if created {
                    super::volumes::copy_up(root, target, &data).map_err(|e| {
                        container_err(id, format!("volume {name}: copying the image's {target} into it: {}", e.chain()))
                    })?;
                }
                HostMount::Bind {
                    source: data,
                    target: target.clone(),
                    read_only: *read_only,
                }
            }
            Mount::Tmpfs { target, size, mode } => HostMount::Tmpfs {
                target: target.clone(),
                size: *size,
                mode: *mode,
            },
        });
    }
    Ok((resolved, anonymous))
}

/// Runs the shim and reads its answer: the container's pid and the
/// shim's, or runc's error.
fn run_shim(inner: &Inner, id: &str, dir: &Path) -> Result<(u32, u32), ExecutorError> {
    let args = ShimArgs {
        runc: inner.opts.runc.binary.clone(),
        runc_root: inner.opts.runc.root.clone(),
        id: id.to_string(),
        bundle: dir.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let mut child = Command::new(&inner.opts.shim)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            container_err(
                id,
                format!("cannot run the shim {}: {e}", inner.opts.shim.display()),
            )
        })?;
    let mut answer = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = out.take(64 << 10).read_to_string(&mut answer);
    }
    let _ = child.wait();
    let answer = answer.trim();
    if let Some(pids) = answer.strip_prefix("ok ") {
        let mut pids = pids.split_whitespace().map(str::parse::<u32>);
        if let (Some(Ok(pid)), Some(Ok(shim))) = (pids.next(), pids.next()) {
            return Ok((pid, shim));
        }
        return Err(container_err(id, format!("the shim answered `{answer}`")));
    }
    let why = answer.strip_prefix("err ").unwrap_or(answer);
    Err(container_err(
        id,
        format!("cannot start the container: {why}"),
    ))
}

/// Removes what runc and the mount hold of a task (not its directory).
pub(super) fn teardown(inner: &Inner, id: &str) {
    if inner.opts.runc.state(id).is_some() {
        if let Err(e) = inner.opts.runc.delete(id) {
            tracing::warn!(task = %id, "runc delete: {}", e.chain());
        }
    }
    let root: PathBuf = inner.task_dir(id).join("rootfs");
    if let Err(e) = rootfs::unmount(&root) {
        tracing::warn!(task = %id, "unmounting {}: {e}", root.display());
    }
    let files = inner.task_dir(id).join(TASK_FILES_DIR);
    if let Err(e) = task_files::remove(&files) {
        tracing::warn!(task = %id, "removing its secrets and configs at {}: {e}", files.display());
    }
    inner.images.release(id);
}
