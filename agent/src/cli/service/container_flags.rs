//! The container flags of `service create|update` (`--runtime`, `--image`,
//! `--entrypoint`, `--user`, `--read-only`, `--cap-add`, `--init`,
//! `--health-*`...), Docker's spellings, applied to a task spec's
//! [`ContainerSpec`]. Docker's positional rule lives here too: `IMAGE
//! [COMMAND] [ARG...]`, or with `--runtime process`, `CMD [ARG...]`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use shoal_control::objects::{ContainerSpec, HealthSpec, MountSpec, TaskSpec};

use super::flag_error::FlagError;
use super::mounts::parse_mount;
use super::values::millis;
use crate::cli::parse_duration;

/// `--runtime`: what a task is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TaskRuntime {
    /// An OCI container of IMAGE, with Docker's isolation.
    #[default]
    Container,
    /// A host command in the task's network namespace (CMD ARGS...).
    Process,
}

/// The flags that shape a container; on `create` over Docker's defaults,
/// on `update` over the current spec (only those given).
#[derive(Debug, Default, Args)]
pub struct ContainerFlags {
    /// Overwrite the image's default entrypoint (words split on spaces;
    /// "" clears it on update).
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Container hostname (default: the task id's first 12 characters).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    read_only: Option<bool>,
    /// Use an init inside each task that forwards signals and reaps
    /// processes.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    init: Option<bool>,
    /// Add Linux capabilities (e.g. NET_ADMIN, or CAP_NET_ADMIN); repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities (ALL drops every one); repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Signal to stop the container (default: the image's, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Limit the number of processes a task may have (0: no limit).
    #[arg(long, value_name = "N")]
    limit_pids: Option<u64>,
    /// Command to run to check health (run by /bin/sh in the container).
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between running the check (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    health_interval: Option<Duration>,
    /// Maximum time to allow one check to run.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    health_timeout: Option<Duration>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Start period for the task to initialize before failures count.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    health_start_period: Option<Duration>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    no_healthcheck: bool,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=...,
    /// target=...[,readonly][,tmpfs-size=...][,tmpfs-mode=...]); on update
    /// it replaces the mount at the same target.
    #[arg(long, visible_alias = "mount-add", value_name = "MOUNT", value_parser = parse_mount)]
    mount: Vec<MountSpec>,
    /// Remove the mount at this target path (update).
    #[arg(long, value_name = "TARGET")]
    mount_rm: Vec<String>,
}

impl ContainerFlags {
    /// Whether any flag was given (they need a container).
    fn any(&self) -> bool {
        self.entrypoint.is_some()
            || self.hostname.is_some()
            || self.user.is_some()
            || self.workdir.is_some()
            || self.read_only.is_some()
            || self.init.is_some()
            || !self.cap_add.is_empty()
            || !self.cap_drop.is_empty()
            || self.stop_signal.is_some()
            || self.limit_pids.is_some()
            || !self.mount.is_empty()
            || !self.mount_rm.is_empty()
            || self.health_given()
    }

    fn health_given(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.no_healthcheck
    }

    /// `create`: the task spec of `runtime` with `positional` (IMAGE
    /// [COMMAND] [ARG...] or CMD [ARG...]) and these flags.
    pub fn create(
        &self,
        runtime: TaskRuntime,
        positional: &[String],
        task: &mut TaskSpec,
    ) -> Result<(), FlagError> {
        match runtime {
            TaskRuntime::Process => {
                if self.any() {
                    return Err(FlagError::NeedsContainer);
                }
                task.command = positional.to_vec();
                task.container = None;
            }
            TaskRuntime::Container => {
                let Some((image, args)) = positional.split_first() else {
                    return Err(FlagError::NoImage);
                };
                task.command = Vec::new();
                let mut container = ContainerSpec {
                    image: image.clone(),
                    args: args.to_vec(),
                    ..ContainerSpec::default()
                };
                self.apply_to(task, &mut container)?;
                task.container = Some(container);
            }
        }
        Ok(())
    }

    /// `update`: `--image`, a new `-- COMMAND ARGS` and these flags over
    /// the spec.
    pub fn update(
        &self,
        image: Option<&str>,
        positional: &[String],
        task: &mut TaskSpec,
    ) -> Result<(), FlagError> {
        let Some(mut container) = task.container.take() else {
            if image.is_some() || self.any() {
                return Err(FlagError::NeedsContainer);
            }
            if !positional.is_empty() {
                task.command = positional.to_vec();
            }
            return Ok(());
        };
        if let Some(image) = image {
            container.image = image.to_string();
        }
        if !positional.is_empty() {
            container.args = positional.to_vec();
        }
        let result = self.apply_to(task, &mut container);
        task.container = Some(container);
        result
    }

    fn apply_to(&self, task: &mut TaskSpec, c: &mut ContainerSpec) -> Result<(), FlagError> {
        if let Some(entrypoint) = &self.entrypoint {
            task.command = entrypoint.split_whitespace().map(str::to_string).collect();
        }
        for (flag, field) in [
            (&self.hostname, &mut c.hostname),
            (&self.user, &mut c.user),
            (&self.workdir, &mut c.workdir),
            (&self.stop_signal, &mut c.stop_signal),
        ] {
            if let Some(value) = flag {
                *field = value.clone();
            }
        }
        if let Some(read_only) = self.read_only {
            c.read_only = read_only;
        }
        if let Some(init) = self.init {
            c.init = init;
        }
        if let Some(pids) = self.limit_pids {
            c.pids_limit = pids;
        }
        c.mounts.retain(|m| !self.mount_rm.contains(&m.target));
        for mount in &self.mount {
            match c.mounts.iter_mut().find(|m| m.target == mount.target) {
                Some(existing) => *existing = mount.clone(),
                None => c.mounts.push(mount.clone()),
            }
        }
        // A cap added undoes its drop and the reverse, as Docker's update.
        for cap in &self.cap_add {
            c.cap_drop.retain(|d| d != cap);
            if !c.cap_add.contains(cap) {
                c.cap_add.push(cap.clone());
            }
        }
        for cap in &self.cap_drop {
            c.cap_add.retain(|a| a != cap);
            if !c.cap_drop.contains(cap) {
                c.cap_drop.push(cap.clone());
            }
        }
        if self.health_given() {
            if self.no_healthcheck && (self.health_cmd.is_some()) {
                return Err(FlagError::HealthConflict);
            }
            let health = c.healthcheck.get_or_insert_with(HealthSpec::default);
            if self.no_healthcheck {
                *health = HealthSpec {
                    test: vec!["NONE".into()],
                    ..HealthSpec::default()
                };
            } else {
                if let Some(cmd) = &self.health_cmd {
                    health.test = vec!["CMD-SHELL".into(), cmd.clone()];
                } else if health.disabled() {
                    health.test.clear();
                }
                let ms = |d: &Option<Duration>| d.map(millis);
                if let Some(v) = ms(&self.health_interval) {
                    health.interval_ms = Some(v);
                }
                if let Some(v) = ms(&self.health_timeout) {
                    health.timeout_ms = Some(v);
                }
                if let Some(v) = ms(&self.health_start_period) {
                    health.start_period_ms = Some(v);
                }
                if let Some(v) = self.health_retries {
                    health.retries = Some(v);
                }
            }
        }
        Ok(())
    }
}
