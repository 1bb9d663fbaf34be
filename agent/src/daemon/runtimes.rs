//! The node's task runtimes: the process runtime always, and the container
//! runtime (runc, the image store) when runc is installed, behind one
//! [`TaskRuntimes`] that picks per task. Everything they keep lives under
//! the agent's state and run directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::identity::StateDir;
use crate::executor::container::Runc;
use crate::executor::{
    cgroup2_mount, ContainerOptions, ContainerRuntime, ProcessRuntime, Runtime, TaskRuntimes,
};
use crate::image::{ImageStore, RegistryOptions};

/// The runtimes of this node, and its image store when it runs containers.
pub struct NodeRuntimes {
    pub runtime: Arc<dyn Runtime>,
    pub images: Option<Arc<ImageStore>>,
    /// The container runtime itself, for its volumes.
    pub containers: Option<Arc<ContainerRuntime>>,
}

/// Opens the runtimes on `state` and `run_dir`, adopting what a previous
/// agent left running; a process task keeps at most `log_limit` bytes of
/// each output on disk.
pub fn open(
    state: &StateDir,
    run_dir: &Path,
    cgroup_root: &Path,
    registries: &RegistryOptions,
    log_limit: u64,
) -> anyhow::Result<NodeRuntimes> {
    let process: Arc<dyn Runtime> = Arc::new(
        ProcessRuntime::new(state.tasks_dir(), cgroup_root.to_path_buf())
            .context("the task runtime did not start")?
            .with_log_limit(log_limit),
    );
    let Some(runc) = Runc::find(run_dir.join("runc")) else {
        tracing::warn!("runc not found: this node runs host commands only (apt-get install runc)");
        return Ok(NodeRuntimes {
            runtime: Arc::new(TaskRuntimes::new(process, None)),
            images: None,
            containers: None,
        });
    };
    let images = Arc::new(
        ImageStore::open(&state.root().join("images"), registries.clone())
            .context("the image store did not open")?,
    );
    let opts = ContainerOptions {
        state_dir: state.root().join("containers"),
        runc,
        shim: std::env::current_exe().context("cannot find the shoal binary for the shim")?,
        cgroup_parent: cgroup_parent(cgroup_root),
        init_binary: ContainerOptions::find_init(),
        volumes_dir: state.root().join("volumes"),
        protected: vec![state.root().to_path_buf(), run_dir.to_path_buf()],
        gc: registries.gc,
    };
    let container = Arc::new(
        ContainerRuntime::new(opts, images.clone(), tokio::runtime::Handle::current())
            .context("the container runtime did not start")?,
    );
    Ok(NodeRuntimes {
        runtime: Arc::new(TaskRuntimes::new(process, Some(container.clone()))),
        images: Some(images),
        containers: Some(container),
    })
}

/// The task cgroup root as runc takes it: relative to the cgroup mounts,
/// so a container's cgroup sits beside the process tasks' (the mesh's
/// socket hooks hang there).
fn cgroup_parent(cgroup_root: &Path) -> String {
    let relative = cgroup2_mount()
        .and_then(|mount| cgroup_root.strip_prefix(mount).ok().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("shoal"));
    format!("/{}", relative.display())
}
