//! What a task asks of the container runtime, beyond the process runtime's
//! [`Launch`](crate::executor::Launch): the image, the Docker options of
//! `service create` (user, read-only root, capabilities, init, pids limit,
//! mounts, stop signal, health check, hostname) and the addresses for its
//! `/etc/hosts`. `Launch::command` is the service's Command (it replaces
//! the image's Entrypoint) and `Launch::env` its Env.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::image::Credentials;

/// The container part of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The image reference, best pinned to a digest by the managers.
    pub image: String,
    /// For pulling it (what `--with-registry-auth` carried).
    pub credentials: Credentials,
    /// The service's Args: they replace the image's Cmd.
    pub args: Vec<String>,
    /// The container's hostname (UTS namespace, /etc/hostname).
    pub hostname: String,
    /// `name[:group]` or `uid[:gid]`; `None` = the image's User.
    pub user: Option<String>,
    /// `None` = the image's WorkingDir (else `/`).
    pub workdir: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Runs a minimal init (tini) as PID 1, reaping zombies.
    pub init: bool,
    /// The most processes the container may have; 0 = no limit.
    pub pids_limit: i64,
    pub mounts: Vec<Mount>,
    /// `None` = the image's StopSignal, else SIGTERM.
    pub stop_signal: Option<String>,
    /// `None` = the image's HEALTHCHECK.
    pub healthcheck: Option<HealthConfig>,
    /// The task's own addresses, listed under its hostname in /etc/hosts.
    pub addresses: Vec<IpAddr>,
    /// More /etc/hosts lines (`--host`).
    pub extra_hosts: Vec<(String, IpAddr)>,
}

/// A `--mount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// A host path.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A named local volume, created on first use; an empty name makes an
    /// anonymous one for the task.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// A tmpfs of `size` bytes (0 = the kernel's default) and `mode`.
    Tmpfs {
        target: String,
        size: u64,
        mode: Option<u32>,
    },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Volume { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// A health check as a service sets it (`--health-*`); unset fields take
/// the image's HEALTHCHECK, then Docker's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["NONE"]` (`--no-healthcheck`), `["CMD", args...]` or
    /// `["CMD-SHELL", command]`; empty = the image's.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
}
