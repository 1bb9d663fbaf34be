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
    /// Time to wait before force killing a container after its stop signal
    /// (e.g. 30s; default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stop_grace_period: Option<Duration>,
    /// Set a custom host-to-IP mapping (host:ip) in the containers'
    /// /etc/hosts; repeatable; on update it adds one.
    #[arg(long = "host", visible_alias = "host-add", value_name = "HOST:IP", value_parser = parse_host)]
    host: Vec<String>,
    /// Remove a custom host-to-IP mapping (host or host:ip) (update).
    #[arg(long = "host-rm", value_name = "HOST[:IP]")]
    host_rm: Vec<String>,
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
            || self.stop_grace_period.is_some()
            || !self.host.is_empty()
            || !self.host_rm.is_empty()
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
        if let Some(grace) = self.stop_grace_period {
            c.stop_grace_period_ms = Some(millis(grace));
        }
        update_hosts(&mut c.hosts, &self.host, &self.host_rm);
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

/// `--host HOST:IP` (or Docker's newer `HOST=IP`; an IPv6 address may be
/// in brackets) as the `/etc/hosts` line the spec keeps, `IP HOST`.
fn parse_host(text: &str) -> Result<String, String> {
    let (name, ip) = match text.split_once('=') {
        Some(split) => split,
        None => text
            .split_once(':')
            .ok_or_else(|| format!("bad format for add-host: \"{text}\""))?,
    };
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    let line = format!("{bare} {name}");
    match shoal_control::objects::host_entry(&line) {
        Some((_, names)) if names.len() == 1 => Ok(line),
        _ if bare.parse::<std::net::IpAddr>().is_err() => {
            Err(format!("invalid IP address in add-host: \"{ip}\""))
        }
        _ => Err(format!("bad format for add-host: \"{text}\"")),
    }
}

/// Docker's `--host-rm` then `--host-add` over the spec's `/etc/hosts`
/// lines (`IP NAME [ALIAS...]`): a `HOST` removal takes that name from
/// every line, `HOST:IP` only from lines of that address; a line left
/// without names goes; the added lines follow, without duplicates.
fn update_hosts(hosts: &mut Vec<String>, add: &[String], remove: &[String]) {
    let removals: Vec<(&str, Option<std::net::IpAddr>)> = remove
        .iter()
        .map(|r| match r.split_once(':') {
            Some((name, ip)) => (
                name,
                ip.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok(),
            ),
            None => (r.as_str(), None),
        })
        .collect();
    let mut kept: Vec<String> = Vec::new();
    for line in hosts.iter() {
        let Some((ip, names)) = shoal_control::objects::host_entry(line) else {
            kept.push(line.clone());
            continue;
        };
        let left: Vec<&str> = names
            .into_iter()
            .filter(|n| {
                !removals
                    .iter()
                    .any(|(name, at)| name == n && at.is_none_or(|at| at == ip))
            })
            .collect();
        if !left.is_empty() {
            kept.push(format!("{ip} {}", left.join(" ")));
        }
    }
    for line in add {
        if !kept.contains(line) {
            kept.push(line.clone());
        }
    }
    *hosts = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_mappings_parse_as_docker_writes_them() {
        assert_eq!(parse_host("db:10.0.0.9").unwrap(), "10.0.0.9 db");
        assert_eq!(parse_host("db=10.0.0.9").unwrap(), "10.0.0.9 db");
        assert_eq!(parse_host("v6:::1").unwrap(), "::1 v6");
        assert_eq!(parse_host("v6=[2001:db8::1]").unwrap(), "2001:db8::1 v6");
        assert_eq!(
            parse_host("db").unwrap_err(),
            "bad format for add-host: \"db\""
        );
        assert_eq!(
            parse_host("db:10.0.0.999").unwrap_err(),
            "invalid IP address in add-host: \"10.0.0.999\""
        );
        assert_eq!(
            parse_host(":10.0.0.9").unwrap_err(),
            "bad format for add-host: \":10.0.0.9\""
        );
        assert_eq!(
            parse_host("a b:10.0.0.9").unwrap_err(),
            "bad format for add-host: \"a b:10.0.0.9\""
        );
    }

    #[test]
    fn host_rm_takes_names_then_host_add_appends() {
        let mut hosts = vec![
            "10.0.0.9 db db.local".to_string(),
            "10.0.0.7 cache".to_string(),
            "10.0.0.8 cache".to_string(),
        ];
        update_hosts(
            &mut hosts,
            &["10.0.0.5 api".to_string(), "10.0.0.7 cache".to_string()],
            &["db".to_string(), "cache:10.0.0.8".to_string()],
        );
        assert_eq!(
            hosts,
            ["10.0.0.9 db.local", "10.0.0.7 cache", "10.0.0.5 api"]
        );
        update_hosts(
            &mut hosts,
            &[],
            &["db.local".to_string(), "cache".to_string()],
        );
        assert_eq!(hosts, ["10.0.0.5 api"]);
    }
}
