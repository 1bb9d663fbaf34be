//! Docker's `ServiceSpec` (the body of `POST /services/create` and
//! `/services/{id}/update`) as shoal's spec: the reverse of
//! [`ServiceSpec::from_shoal`].
//!
//! A spec with an `Image` runs it as a container (Docker's rules for
//! `Command` and `Args`); one without runs a host command. A field shoal
//! cannot honour is refused with its name
//! (`TaskTemplate.ContainerSpec.Sysctls is not supported`), never dropped;
//! the values Docker's CLI sends by default (`Isolation: "default"`,
//! `Init: false`, empty objects) are accepted as "nothing asked".

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};

use super::service::STACK_NAMESPACE;
use super::{
    ContainerSpec, EndpointSpec, HealthConfig, Labels, Mount, NetworkAttachmentConfig, PortConfig,
    ServiceSpec, TaskSpec, UpdateConfig,
};
use crate::objects::{
    self, Constraint, FailureAction, MountKind, Protocol, RestartCondition, Strategy, UpdateOrder,
};

/// Why a Docker spec cannot become a shoal spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{field} is not supported by shoal; leave it out of the service spec")]
    Unsupported { field: &'static str },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A converted spec, and what the caller should be told about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub spec: objects::ServiceSpec,
    /// Docker's `Warnings` of the create/update answer.
    pub warnings: Vec<String>,
}

fn unsupported(field: &'static str) -> SpecError {
    SpecError::Unsupported { field }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Refuses `field` when `set`.
fn refuse_if(set: bool, field: &'static str) -> Result<(), SpecError> {
    if set {
        Err(unsupported(field))
    } else {
        Ok(())
    }
}

/// Docker's nanoseconds as milliseconds.
fn millis(field: &'static str, nanos: i64) -> Result<u64, SpecError> {
    u64::try_from(nanos / 1_000_000).map_err(|_| invalid(field, "a duration cannot be negative"))
}

fn unsigned(field: &'static str, value: i64) -> Result<u64, SpecError> {
    u64::try_from(value).map_err(|_| invalid(field, "cannot be negative"))
}

impl ServiceSpec {
    /// The shoal spec this Docker spec asks for. Network targets stay as
    /// given (names or ids: the manager resolves them).
    pub fn to_shoal(&self) -> Result<Converted, SpecError> {
        let warnings = Vec::new();
        let mode = match (
            &self.mode.replicated,
            &self.mode.global,
            &self.mode.replicated_job,
            &self.mode.global_job,
        ) {
            (_, _, Some(_), _) => return Err(unsupported("Mode.ReplicatedJob")),
            (_, _, _, Some(_)) => return Err(unsupported("Mode.GlobalJob")),
            (Some(_), Some(_), _, _) => {
                return Err(invalid("Mode", "set Replicated or Global, not both"))
            }
            (_, Some(_), _, _) => objects::ServiceMode::Global,
            // The CLI sends `{"Replicated":{}}` for one replica.
            (Some(r), None, _, _) => objects::ServiceMode::Replicated {
                replicas: r.replicas.unwrap_or(1),
            },
            (None, None, _, _) => objects::ServiceMode::Replicated { replicas: 1 },
        };
        let task = &self.task_template;
        let mut networks: Vec<String> = Vec::new();
        let mut network_aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for attachment in task.networks.iter().chain(&self.networks) {
            let target = network_target(attachment)?;
            if !attachment.aliases.is_empty() {
                let aliases = network_aliases.entry(target.clone()).or_default();
                for alias in &attachment.aliases {
                    if !aliases.contains(alias) {
                        aliases.push(alias.clone());
                    }
                }
            }
            networks.push(target);
        }
        let mut seen = BTreeSet::new();
        networks.retain(|n| seen.insert(n.clone()));
        let (endpoint_mode, ports) = match &self.endpoint_spec {
            Some(endpoint) => endpoint_ports(endpoint)?,
            None => (objects::EndpointMode::Vip, Vec::new()),
        };
        let spec = objects::ServiceSpec {
            name: self.name.clone(),
            labels: self.labels.clone().unwrap_or_default(),
            mode,
            task: task_spec(task, self.labels.as_ref())?,
            networks,
            ports,
            endpoint_mode,
            network_aliases,
            update: update_config(self.update_config.as_ref(), "UpdateConfig")?,
            rollback: update_config(self.rollback_config.as_ref(), "RollbackConfig")?,
        };
        Ok(Converted { spec, warnings })
    }
}

fn network_target(attachment: &NetworkAttachmentConfig) -> Result<String, SpecError> {
    refuse_if(
        attachment
            .driver_opts
            .as_ref()
            .is_some_and(|o| !o.is_empty()),
        "TaskTemplate.Networks.DriverOpts",
    )?;
    if attachment.target.is_empty() {
        return Err(invalid(
            "TaskTemplate.Networks.Target",
            "a network name or id is needed",
        ));
    }
    Ok(attachment.target.clone())
}

fn endpoint_ports(
    endpoint: &EndpointSpec,
) -> Result<(objects::EndpointMode, Vec<objects::PortConfig>), SpecError> {
    let mode = match endpoint.mode.as_str() {
        "" | "vip" => objects::EndpointMode::Vip,
        "dnsrr" => objects::EndpointMode::Dnsrr,
        other => {
            return Err(invalid(
                "EndpointSpec.Mode",
                format!("`{other}`: use vip or dnsrr"),
            ))
        }
    };
    let ports = endpoint.ports.iter().map(port).collect::<Result<_, _>>()?;
    Ok((mode, ports))
}

fn port(port: &PortConfig) -> Result<objects::PortConfig, SpecError> {
    let protocol = match port.protocol.as_str() {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => return Err(unsupported("EndpointSpec.Ports.Protocol sctp")),
        other => {
            return Err(invalid(
                "EndpointSpec.Ports.Protocol",
                format!("`{other}`: use tcp or udp"),
            ))
        }
    };
    let mode = match port.publish_mode.as_str() {
        "" | "ingress" => objects::PublishMode::Ingress,
        "host" => objects::PublishMode::Host,
        other => {
            return Err(invalid(
                "EndpointSpec.Ports.PublishMode",
                format!("`{other}`: use ingress or host"),
            ))
        }
    };
    let number = |field: &'static str, value: u32| {
        u16::try_from(value).map_err(|_| invalid(field, format!("{value} is above 65535")))
    };
    Ok(objects::PortConfig {
        protocol,
        target: number("EndpointSpec.Ports.TargetPort", port.target_port)?,
        published: number("EndpointSpec.Ports.PublishedPort", port.published_port)?,
        mode,
    })
}

fn task_spec(
    task: &TaskSpec,
    service_labels: Option<&Labels>,
) -> Result<objects::TaskSpec, SpecError> {
    refuse_if(task.plugin_spec.is_some(), "TaskTemplate.PluginSpec")?;
    refuse_if(
        task.network_attachment_spec.is_some(),
        "TaskTemplate.NetworkAttachmentSpec",
    )?;
    refuse_if(
        task.log_driver.as_ref().is_some_and(|d| !d.name.is_empty()),
        "TaskTemplate.LogDriver",
    )?;
    match task.runtime.as_str() {
        "" | "container" => {}
        _ => return Err(unsupported("TaskTemplate.Runtime (only container)")),
    }
    let pids_limit = match task.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        Some(limits) => unsigned("TaskTemplate.Resources.Limits.Pids", limits.pids)?,
        None => 0,
    };
    let parts = match &task.container_spec {
        Some(container) => container_spec(container, service_labels, pids_limit)?,
        None => {
            return Err(invalid(
                "TaskTemplate.ContainerSpec",
                "a service needs a ContainerSpec with an Image",
            ))
        }
    };
    let mut resources = objects::Resources::default();
    if let Some(r) = &task.resources {
        if let Some(limits) = &r.limits {
            resources.limit_nano_cpus =
                unsigned("TaskTemplate.Resources.Limits.NanoCPUs", limits.nano_cpus)?;
            resources.limit_memory = unsigned(
                "TaskTemplate.Resources.Limits.MemoryBytes",
                limits.memory_bytes,
            )?;
        }
        if let Some(reserve) = &r.reservations {
            refuse_if(
                !reserve.generic_resources.is_empty(),
                "TaskTemplate.Resources.Reservations.GenericResources",
            )?;
            resources.reserve_nano_cpus = unsigned(
                "TaskTemplate.Resources.Reservations.NanoCPUs",
                reserve.nano_cpus,
            )?;
            resources.reserve_memory = unsigned(
                "TaskTemplate.Resources.Reservations.MemoryBytes",
                reserve.memory_bytes,
            )?;
        }
    }
    let mut restart = objects::RestartPolicy::default();
    if let Some(policy) = &task.restart_policy {
        restart.condition = match policy.condition.as_str() {
            "" | "any" => RestartCondition::Any,
            "on-failure" => RestartCondition::OnFailure,
            "none" => RestartCondition::None,
            other => {
                return Err(invalid(
                    "TaskTemplate.RestartPolicy.Condition",
                    format!("`{other}`: use none, on-failure or any"),
                ))
            }
        };
        if let Some(delay) = policy.delay {
            restart.delay_ms = millis("TaskTemplate.RestartPolicy.Delay", delay)?;
        }
        restart.max_attempts = policy.max_attempts.filter(|n| *n != 0);
        refuse_if(
            policy.window.is_some_and(|w| w != 0),
            "TaskTemplate.RestartPolicy.Window",
        )?;
    }
    let mut placement = objects::Placement::default();
    if let Some(p) = &task.placement {
        refuse_if(p.max_replicas != 0, "TaskTemplate.Placement.MaxReplicas")?;
        // Every shoal node runs Linux tasks of its own architecture; the
        // CLI only sets Platforms from a resolved image.
        placement.constraints = p
            .constraints
            .iter()
            .map(|c| {
                c.parse::<Constraint>()
                    .map_err(|e| invalid("TaskTemplate.Placement.Constraints", e))
            })
            .collect::<Result<_, _>>()?;
        placement.preferences = p
            .preferences
            .iter()
            .map(|pref| match &pref.spread {
                Some(spread) if !spread.spread_descriptor.is_empty() => {
                    let text = format!("spread={}", spread.spread_descriptor);
                    objects::spread_label(&text).map_err(|e| {
                        invalid("TaskTemplate.Placement.Preferences", e.chain().to_string())
                    })?;
                    Ok(text)
                }
                _ => Err(invalid(
                    "TaskTemplate.Placement.Preferences",
                    "only Spread with a SpreadDescriptor (node.labels.KEY) is supported",
                )),
            })
            .collect::<Result<_, _>>()?;
        placement.strategy = match &p.strategy {
            None => None,
            Some(s) => Some(
                s.parse::<Strategy>()
                    .map_err(|e| invalid("TaskTemplate.Placement.Strategy", e))?,
            ),
        };
    }
    Ok(objects::TaskSpec {
        command: parts.command,
        env: parts.env,
        resources,
        restart,
        placement,
        force_update: task.force_update,
        container: parts.container,
        secrets: match &task.container_spec {
            Some(c) => super::payload_refs::secrets_to_shoal(&c.secrets)?,
            None => Vec::new(),
        },
        configs: match &task.container_spec {
            Some(c) => super::payload_refs::configs_to_shoal(&c.configs)?,
            None => Vec::new(),
        },
    })
}

/// What a Docker `ContainerSpec` becomes: the task's command (Docker's
/// `Command` for an image, the host command without one), its environment
/// and, for an image, the container part.
struct ContainerParts {
    command: Vec<String>,
    env: Vec<String>,
    container: Option<objects::ContainerSpec>,
}

/// `TaskTemplate.ContainerSpec`. With an `Image` (what Docker's CLI always
/// sends) the task is a container: `Command` replaces the image's
/// Entrypoint and `Args` its Cmd, as with dockerd. Without one it is a
/// host command (`Command` then `Args`), shoal's `--runtime process`,
/// which is what `from_shoal` prints for such a service, so its updates
/// round-trip; the options only a container has are then refused.
fn container_spec(
    c: &ContainerSpec,
    service_labels: Option<&Labels>,
    pids_limit: u64,
) -> Result<ContainerParts, SpecError> {
    // Only the stack's own label, which the service carries too (and
    // `from_shoal` puts back), may label the containers.
    refuse_if(
        c.labels.as_ref().is_some_and(|l| {
            l.iter().any(|(k, v)| {
                k != STACK_NAMESPACE || service_labels.and_then(|s| s.get(k)) != Some(v)
            })
        }),
        "TaskTemplate.ContainerSpec.Labels",
    )?;
    refuse_if(!c.groups.is_empty(), "TaskTemplate.ContainerSpec.Groups")?;
    if let Some(privileges) = &c.privileges {
        refuse_if(
            privileges.credential_spec.is_some(),
            "TaskTemplate.ContainerSpec.Privileges.CredentialSpec",
        )?;
        refuse_if(
            privileges.selinux_context.is_some(),
            "TaskTemplate.ContainerSpec.Privileges.SELinuxContext",
        )?;
    }
    refuse_if(c.tty, "TaskTemplate.ContainerSpec.TTY")?;
    refuse_if(c.open_stdin, "TaskTemplate.ContainerSpec.OpenStdin")?;
    refuse_if(
        c.dns_config.as_ref().is_some_and(|d| {
            !d.nameservers.is_empty() || !d.search.is_empty() || !d.options.is_empty()
        }),
        "TaskTemplate.ContainerSpec.DNSConfig",
    )?;
    refuse_if(
        !matches!(c.isolation.as_str(), "" | "default"),
        "TaskTemplate.ContainerSpec.Isolation",
    )?;
    refuse_if(
        c.sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        "TaskTemplate.ContainerSpec.Sysctls",
    )?;
    refuse_if(!c.ulimits.is_empty(), "TaskTemplate.ContainerSpec.Ulimits")?;
    if c.image.is_empty() {
        return host_command(c, pids_limit);
    }
    let stop_grace_period_ms = match c.stop_grace_period {
        Some(nanos) => Some(millis("TaskTemplate.ContainerSpec.StopGracePeriod", nanos)?),
        None => None,
    };
    let healthcheck = match &c.healthcheck {
        Some(h) => Some(health(h)?),
        None => None,
    };
    let container = objects::ContainerSpec {
        image: c.image.clone(),
        args: c.args.clone(),
        hostname: c.hostname.clone(),
        user: c.user.clone(),
        workdir: c.dir.clone(),
        read_only: c.read_only,
        cap_add: c.capability_add.clone(),
        cap_drop: c.capability_drop.clone(),
        init: c.init == Some(true),
        stop_signal: c.stop_signal.clone(),
        stop_grace_period_ms,
        pids_limit,
        healthcheck,
        mounts: c.mounts.iter().map(mount).collect::<Result<_, _>>()?,
        hosts: c.hosts.clone(),
        registry_auth: objects::RegistryAuth::default(),
    };
    Ok(ContainerParts {
        command: c.command.clone(),
        env: c.env.clone(),
        container: Some(container),
    })
}

/// A spec without an image: a host command; what only a container has is
/// refused by name.
fn host_command(c: &ContainerSpec, pids_limit: u64) -> Result<ContainerParts, SpecError> {
    for (set, name) in [
        (
            !c.hostname.is_empty(),
            "TaskTemplate.ContainerSpec.Hostname",
        ),
        (!c.dir.is_empty(), "TaskTemplate.ContainerSpec.Dir"),
        (!c.user.is_empty(), "TaskTemplate.ContainerSpec.User"),
        (c.init == Some(true), "TaskTemplate.ContainerSpec.Init"),
        (
            !c.stop_signal.is_empty(),
            "TaskTemplate.ContainerSpec.StopSignal",
        ),
        (
            c.stop_grace_period.is_some_and(|g| g != 0),
            "TaskTemplate.ContainerSpec.StopGracePeriod",
        ),
        (c.read_only, "TaskTemplate.ContainerSpec.ReadOnly"),
        (!c.mounts.is_empty(), "TaskTemplate.ContainerSpec.Mounts"),
        (
            c.healthcheck.is_some(),
            "TaskTemplate.ContainerSpec.Healthcheck",
        ),
        (!c.hosts.is_empty(), "TaskTemplate.ContainerSpec.Hosts"),
        (
            !c.capability_add.is_empty(),
            "TaskTemplate.ContainerSpec.CapabilityAdd",
        ),
        (
            !c.capability_drop.is_empty(),
            "TaskTemplate.ContainerSpec.CapabilityDrop",
        ),
        (pids_limit != 0, "TaskTemplate.Resources.Limits.Pids"),
    ] {
        if set {
            return Err(invalid(
                name,
                "it needs an image (ContainerSpec.Image): a spec without one runs a host command",
            ));
        }
    }
    Ok(ContainerParts {
        command: c.command.iter().chain(&c.args).cloned().collect(),
        env: c.env.clone(),
        container: None,
    })
}

fn health(h: &HealthConfig) -> Result<objects::HealthSpec, SpecError> {
    const FIELD: &str = "TaskTemplate.ContainerSpec.Healthcheck";
    // Docker's zero: inherit the image's value.
    let duration = |nanos: i64| match nanos {
        0 => Ok(None),
        n => millis(FIELD, n).map(Some),
    };
    Ok(objects::HealthSpec {
        test: h.test.clone(),
        interval_ms: duration(h.interval)?,
        timeout_ms: duration(h.timeout)?,
        start_period_ms: duration(h.start_period)?,
        retries: match h.retries {
            0 => None,
            n => Some(u32::try_from(n).map_err(|_| invalid(FIELD, "Retries is out of range"))?),
        },
    })
}

/// One `Mounts` entry; what shoal's local mounts cannot do is refused.
fn mount(m: &Mount) -> Result<objects::MountSpec, SpecError> {
    refuse_if(
        !matches!(m.consistency.as_str(), "" | "default"),
        "TaskTemplate.ContainerSpec.Mounts.Consistency",
    )?;
    let kind = match m.kind.as_str() {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        "npipe" => return Err(unsupported("TaskTemplate.ContainerSpec.Mounts.Type npipe")),
        other => {
            return Err(invalid(
                "TaskTemplate.ContainerSpec.Mounts.Type",
                format!("`{other}`: use bind, volume or tmpfs"),
            ))
        }
    };
    if let Some(bind) = &m.bind_options {
        refuse_if(
            kind != MountKind::Bind,
            "TaskTemplate.ContainerSpec.Mounts.BindOptions (only for a bind)",
        )?;
        refuse_if(
            !matches!(bind.propagation.as_str(), "" | "rprivate"),
            "TaskTemplate.ContainerSpec.Mounts.BindOptions.Propagation",
        )?;
        refuse_if(
            bind.non_recursive,
            "TaskTemplate.ContainerSpec.Mounts.BindOptions.NonRecursive",
        )?;
    }
    if let Some(volume) = &m.volume_options {
        refuse_if(
            kind != MountKind::Volume,
            "TaskTemplate.ContainerSpec.Mounts.VolumeOptions (only for a volume)",
        )?;
        refuse_if(
            volume.no_copy,
            "TaskTemplate.ContainerSpec.Mounts.VolumeOptions.NoCopy",
        )?;
        refuse_if(
            volume.driver_config.as_ref().is_some_and(|d| {
                !matches!(d.name.as_str(), "" | "local")
                    || d.options.as_ref().is_some_and(|o| !o.is_empty())
            }),
            "TaskTemplate.ContainerSpec.Mounts.VolumeOptions.DriverConfig (only the local driver, without options)",
        )?;
    }
    let (mut tmpfs_size, mut tmpfs_mode) = (0, None);
    if let Some(tmpfs) = &m.tmpfs_options {
        refuse_if(
            kind != MountKind::Tmpfs,
            "TaskTemplate.ContainerSpec.Mounts.TmpfsOptions (only for a tmpfs)",
        )?;
        tmpfs_size = unsigned(
            "TaskTemplate.ContainerSpec.Mounts.TmpfsOptions.SizeBytes",
            tmpfs.size_bytes,
        )?;
        tmpfs_mode = (tmpfs.mode != 0).then_some(tmpfs.mode);
    }
    Ok(objects::MountSpec {
        kind,
        source: m.source.clone(),
        target: m.target.clone(),
        read_only: m.read_only,
        tmpfs_size,
        tmpfs_mode,
        volume_labels: m
            .volume_options
            .as_ref()
            .and_then(|v| v.labels.clone())
            .unwrap_or_default(),
    })
}

fn update_config(
    config: Option<&UpdateConfig>,
    field: &'static str,
) -> Result<objects::UpdateConfig, SpecError> {
    let Some(config) = config else {
        return Ok(objects::UpdateConfig::default());
    };
    let defaults = objects::UpdateConfig::default();
    Ok(objects::UpdateConfig {
        parallelism: config.parallelism,
        delay_ms: millis(field, config.delay)?,
        failure_action: match config.failure_action.as_str() {
            "" | "pause" => FailureAction::Pause,
            "continue" => FailureAction::Continue,
            "rollback" => FailureAction::Rollback,
            other => {
                return Err(invalid(
                    field,
                    format!("FailureAction `{other}`: use pause, continue or rollback"),
                ))
            }
        },
        order: match config.order.as_str() {
            "" | "stop-first" => UpdateOrder::StopFirst,
            "start-first" => UpdateOrder::StartFirst,
            other => {
                return Err(invalid(
                    field,
                    format!("Order `{other}`: use stop-first or start-first"),
                ))
            }
        },
        monitor_ms: if config.monitor == 0 {
            defaults.monitor_ms
        } else {
            millis(field, config.monitor)?
        },
        max_failure_ratio: config.max_failure_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> ServiceSpec {
        serde_json::from_value(json).expect("a Docker spec")
    }

    /// What docker 20.10's `service create --name web --replicas 3 -p
    /// 8080:80 --network app --env A=1 --constraint node.role==worker
    /// busybox httpd -f` posts.
    fn cli_create() -> serde_json::Value {
        serde_json::json!({
            "Name": "web", "Labels": {},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "busybox", "Args": ["httpd", "-f"], "Env": ["A=1"],
                    "Init": false, "DNSConfig": {}, "Isolation": "default"},
                "Resources": {"Limits": {}, "Reservations": {}},
                "Placement": {"Constraints": ["node.role==worker"]},
                "Networks": [{"Target": "app"}],
                "ForceUpdate": 0, "Runtime": "container"},
            "Mode": {"Replicated": {"Replicas": 3}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause",
                "Monitor": 5000000000i64, "MaxFailureRatio": 0, "Order": "stop-first"},
            "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause",
                "Monitor": 5000000000i64, "MaxFailureRatio": 0, "Order": "stop-first"},
            "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80,
                "PublishedPort": 8080, "PublishMode": "ingress"}]}
        })
    }

    #[test]
    fn the_clis_create_body_becomes_shoals_spec() {
        let converted = parse(cli_create()).to_shoal().unwrap();
        let spec = converted.spec;
        assert_eq!(spec.name, "web");
        assert_eq!(spec.mode, objects::ServiceMode::Replicated { replicas: 3 });
        // Docker's rules: Args replace the image's Cmd, its Entrypoint stays.
        assert!(spec.task.command.is_empty());
        let container = spec.task.container.as_ref().expect("a container task");
        assert_eq!(container.image, "busybox");
        assert_eq!(container.args, ["httpd", "-f"]);
        assert!(!container.init);
        assert_eq!(spec.task.env, ["A=1"]);
        assert_eq!(spec.networks, ["app"]);
        assert_eq!(
            spec.ports,
            [objects::PortConfig {
                protocol: Protocol::Tcp,
                target: 80,
                published: 8080,
                mode: Default::default(),
            }]
        );
        assert_eq!(
            spec.task.placement.constraints[0].to_string(),
            "node.role==worker"
        );
        assert_eq!(spec.update, objects::UpdateConfig::default());
        assert!(spec.validate().is_ok());
        assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
    }

    #[test]
    fn an_empty_replicated_mode_is_one_replica() {
        let mut body = cli_create();
        body["Mode"] = serde_json::json!({"Replicated": {}});
        let spec = parse(body).to_shoal().unwrap().spec;
        assert_eq!(spec.mode, objects::ServiceMode::Replicated { replicas: 1 });
        let mut body = cli_create();
        body["Mode"] = serde_json::json!({"Global": {}});
        assert_eq!(
            parse(body).to_shoal().unwrap().spec.mode,
            objects::ServiceMode::Global
        );
    }

    #[test]
    fn what_shoal_cannot_honour_is_refused_by_name() {
        let cases = [
            (
                "/TaskTemplate/ContainerSpec/Privileges",
                serde_json::json!({"CredentialSpec": {"File": "x.json"}}),
                "TaskTemplate.ContainerSpec.Privileges.CredentialSpec",
            ),
            (
                "/TaskTemplate/ContainerSpec/Mounts",
                serde_json::json!([{"Type": "npipe", "Source": "x", "Target": "/h"}]),
                "TaskTemplate.ContainerSpec.Mounts.Type npipe",
            ),
            (
                "/TaskTemplate/ContainerSpec/Mounts",
                serde_json::json!([{"Type": "volume", "Source": "v", "Target": "/v",
                    "VolumeOptions": {"NoCopy": true}}]),
                "TaskTemplate.ContainerSpec.Mounts.VolumeOptions.NoCopy",
            ),
            (
                "/TaskTemplate/ContainerSpec/Mounts",
                serde_json::json!([{"Type": "bind", "Source": "/srv", "Target": "/s",
                    "BindOptions": {"Propagation": "rshared"}}]),
                "TaskTemplate.ContainerSpec.Mounts.BindOptions.Propagation",
            ),
            (
                "/TaskTemplate/ContainerSpec/Sysctls",
                serde_json::json!({"net.core.somaxconn": "1024"}),
                "TaskTemplate.ContainerSpec.Sysctls",
            ),
            (
                "/TaskTemplate/ContainerSpec/Groups",
                serde_json::json!(["adm"]),
                "TaskTemplate.ContainerSpec.Groups",
            ),
            (
                "/Mode",
                serde_json::json!({"ReplicatedJob": {}}),
                "Mode.ReplicatedJob",
            ),
            (
                "/TaskTemplate/ContainerSpec/Ulimits",
                serde_json::json!([{"Name": "nofile", "Hard": 10, "Soft": 10}]),
                "TaskTemplate.ContainerSpec.Ulimits",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut body = cli_create();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = body.pointer_mut(parent).unwrap();
            match target {
                serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
                _ => target[key] = value,
            }
            let err = parse(body).to_shoal().unwrap_err();
            assert_eq!(err, SpecError::Unsupported { field }, "{pointer}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn bad_values_are_invalid_with_the_field_named() {
        let mut body = cli_create();
        body["TaskTemplate"]["Placement"]["Constraints"] = serde_json::json!(["node.colour==red"]);
        let err = parse(body).to_shoal().unwrap_err();
        assert!(
            matches!(&err, SpecError::Invalid { field, .. } if *field == "TaskTemplate.Placement.Constraints"),
            "{err}"
        );
        let mut body = cli_create();
        body["EndpointSpec"]["Ports"][0]["TargetPort"] = serde_json::json!(70000);
        assert!(parse(body).to_shoal().is_err());
    }

    /// shoal spec -> Docker JSON -> shoal spec is the identity, for every
    /// field shoal has.
    #[test]
    fn shoal_specs_round_trip_through_dockers_json() {
        let spec: objects::ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "api",
            "labels": {"team": "shop", "com.docker.stack.namespace": "app"},
            "mode": {"replicated": {"replicas": 4}},
            "task": {
                "command": ["httpd", "-f", "-p", "80"],
                "env": ["A=1", "B=two"],
                "resources": {"reserve_nano_cpus": 100000000, "reserve_memory": 1048576,
                              "limit_nano_cpus": 500000000, "limit_memory": 67108864},
                "restart": {"condition": "on-failure", "delay_ms": 2000, "max_attempts": 3},
                "placement": {"constraints": [{"key": "node.labels.zone", "equal": false, "value": "b"}],
                              "preferences": ["spread=node.labels.zone"], "strategy": "binpack"},
                "force_update": 2
            },
            "networks": ["n1", "n2"],
            "network_aliases": {"n2": ["db", "pg"]},
            "endpoint_mode": "dnsrr",
            "ports": [{"protocol": "udp", "target": 53, "published": 5353, "mode": "host"},
                      {"protocol": "tcp", "target": 80, "published": 0}],
            "update": {"parallelism": 2, "delay_ms": 10000, "failure_action": "rollback",
                       "order": "start-first", "monitor_ms": 3000, "max_failure_ratio": 0.5},
            "rollback": {"parallelism": 0, "delay_ms": 0, "failure_action": "continue",
                         "order": "stop-first", "monitor_ms": 5000, "max_failure_ratio": 0.0}
        }))
        .unwrap();
        let docker = ServiceSpec::from_shoal(&spec);
        let json = serde_json::to_string(&docker).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["EndpointSpec"]["Mode"], "dnsrr");
        assert_eq!(value["EndpointSpec"]["Ports"][0]["PublishMode"], "host");
        assert_eq!(value["EndpointSpec"]["Ports"][1]["PublishMode"], "ingress");
        assert_eq!(
            value["TaskTemplate"]["Networks"][1],
            serde_json::json!({"Target": "n2", "Aliases": ["db", "pg"]})
        );
        let back: ServiceSpec = serde_json::from_str(&json).unwrap();
        let converted = back.to_shoal().unwrap();
        assert_eq!(converted.spec, spec);
        assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
    }

    /// A container spec with every field shoal has, round-tripped through
    /// Docker's JSON: what `docker service inspect` shows and `docker
    /// service update` posts back changes nothing.
    #[test]
    fn container_specs_round_trip_through_dockers_json() {
        let spec: objects::ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "web",
            "mode": "global",
            "task": {
                "command": ["/docker-entrypoint.sh", "nginx"],
                "env": ["A=1"],
                "container": {
                    "image": "registry.example:5000/nginx:1.25@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
                    "args": ["-g", "daemon off;"],
                    "hostname": "{{.Service.Name}}-{{.Task.Slot}}",
                    "user": "www-data:adm",
                    "workdir": "/srv",
                    "read_only": true,
                    "cap_add": ["CAP_NET_ADMIN"],
                    "cap_drop": ["CAP_MKNOD"],
                    "init": true,
                    "stop_signal": "SIGQUIT",
                    "stop_grace_period_ms": 30000,
                    "pids_limit": 100,
                    "healthcheck": {"test": ["CMD-SHELL", "wget -q -O- localhost"],
                        "interval_ms": 2000, "timeout_ms": 1000, "start_period_ms": 500,
                        "retries": 3},
                    "mounts": [
                        {"type": "bind", "source": "/srv/www", "target": "/www", "read_only": true},
                        {"type": "volume", "source": "data", "target": "/data"},
                        {"type": "volume", "target": "/anon"},
                        {"type": "tmpfs", "target": "/scratch", "tmpfs_size": 1048576,
                         "tmpfs_mode": 1016}
                    ],
                    "hosts": ["10.0.0.9 db db.local"]
                }
            }
        }))
        .unwrap();
        assert_eq!(spec.validate(), Ok(()));
        let docker = ServiceSpec::from_shoal(&spec);
        let json = serde_json::to_value(&docker).unwrap();
        let c = &json["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Image"], spec.task.container.as_ref().unwrap().image);
        assert_eq!(
            c["Command"],
            serde_json::json!(["/docker-entrypoint.sh", "nginx"])
        );
        assert_eq!(c["Args"], serde_json::json!(["-g", "daemon off;"]));
        assert_eq!(c["StopGracePeriod"], 30_000_000_000i64);
        assert_eq!(c["Init"], true);
        assert_eq!(
            c["Mounts"][3],
            serde_json::json!({"Type": "tmpfs", "Target": "/scratch",
                "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 1016}})
        );
        assert_eq!(json["TaskTemplate"]["Resources"]["Limits"]["Pids"], 100);
        let back: ServiceSpec = serde_json::from_value(json).unwrap();
        let converted = back.to_shoal().unwrap();
        assert_eq!(converted.spec, spec);
        assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
    }

    /// `docker stack deploy` labels each stack volume with the stack's
    /// namespace: kept, and shown back as Docker shows it.
    #[test]
    fn a_stack_volumes_labels_are_kept_and_shown_back() {
        let mount = serde_json::json!({"Type": "volume", "Source": "vote_db-data",
            "Target": "/var/lib/postgresql/data",
            "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "vote"}}});
        let mut body = cli_create();
        body["TaskTemplate"]["ContainerSpec"]["Mounts"] = serde_json::json!([mount.clone()]);
        let spec = parse(body).to_shoal().unwrap().spec;
        let stored = &spec.task.container.as_ref().unwrap().mounts[0];
        assert_eq!(stored.volume_labels["com.docker.stack.namespace"], "vote");
        let shown = serde_json::to_value(super::super::Mount::from_shoal(stored)).unwrap();
        assert_eq!(shown, mount);
    }

    /// What docker 20.10 posts for `service create --mount ... --health-cmd
    /// ... --user ... --stop-grace-period 20s --host db:10.0.0.9
    /// --entrypoint /bin/sh IMAGE -c 'x'`.
    #[test]
    fn the_clis_container_options_map_field_by_field() {
        let mut body = cli_create();
        body["TaskTemplate"]["ContainerSpec"] = serde_json::json!({
            "Image": "r:5000/web:1@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
            "Command": ["/bin/sh"], "Args": ["-c", "x"],
            "Hostname": "web", "Env": ["A=1"], "Dir": "/w", "User": "app",
            "Init": true, "StopSignal": "SIGINT", "ReadOnly": true,
            "Mounts": [{"Type": "volume", "Source": "v1", "Target": "/v",
                        "VolumeOptions": {"DriverConfig": {}}},
                       {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 4096}}],
            "StopGracePeriod": 20_000_000_000i64,
            "Healthcheck": {"Test": ["NONE"]},
            "Hosts": ["10.0.0.9 db"],
            "DNSConfig": {}, "Isolation": "default",
            "CapabilityAdd": ["CAP_SYS_TIME"], "CapabilityDrop": ["CAP_CHOWN"]
        });
        let spec = parse(body).to_shoal().unwrap().spec;
        assert_eq!(spec.task.command, ["/bin/sh"]);
        assert_eq!(spec.task.env, ["A=1"]);
        let c = spec.task.container.as_ref().unwrap();
        assert_eq!(c.args, ["-c", "x"]);
        assert_eq!(
            (c.hostname.as_str(), c.workdir.as_str(), c.user.as_str()),
            ("web", "/w", "app")
        );
        assert!(c.init && c.read_only);
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.stop_grace_period_ms, Some(20_000));
        assert!(c.healthcheck.as_ref().unwrap().disabled());
        assert_eq!(c.hosts, ["10.0.0.9 db"]);
        assert_eq!(
            (c.cap_add.as_slice(), c.cap_drop.as_slice()),
            (
                &["CAP_SYS_TIME".to_string()][..],
                &["CAP_CHOWN".to_string()][..]
            )
        );
        assert_eq!(c.mounts[0].kind, MountKind::Volume);
        assert_eq!(c.mounts[0].source, "v1");
        assert_eq!(c.mounts[1].tmpfs_size, 4096);
        assert!(c.registry_auth.is_empty());
        assert_eq!(spec.validate(), Ok(()));
    }

    /// Without an image the spec is a host command (`Command` then
    /// `Args`), as `from_shoal` prints a `--runtime process` service; what
    /// only a container has is refused by name.
    #[test]
    fn a_spec_without_an_image_is_a_host_command() {
        let mut body = cli_create();
        body["TaskTemplate"]["ContainerSpec"] =
            serde_json::json!({"Command": ["python3"], "Args": ["-m", "http.server"]});
        let spec = parse(body.clone()).to_shoal().unwrap().spec;
        assert_eq!(spec.task.command, ["python3", "-m", "http.server"]);
        assert!(spec.task.container.is_none());
        for (key, value, field) in [
            (
                "User",
                serde_json::json!("nobody"),
                "TaskTemplate.ContainerSpec.User",
            ),
            (
                "Mounts",
                serde_json::json!([{"Type": "tmpfs", "Target": "/t"}]),
                "TaskTemplate.ContainerSpec.Mounts",
            ),
            (
                "ReadOnly",
                serde_json::json!(true),
                "TaskTemplate.ContainerSpec.ReadOnly",
            ),
        ] {
            let mut with = body.clone();
            with["TaskTemplate"]["ContainerSpec"][key] = value;
            let err = parse(with).to_shoal().unwrap_err();
            assert!(
                matches!(&err, SpecError::Invalid { field: f, .. } if *f == field),
                "{key}: {err}"
            );
            assert!(err.to_string().contains("needs an image"), "{err}");
        }
        body["TaskTemplate"]["Resources"]["Limits"]["Pids"] = serde_json::json!(5);
        assert!(parse(body).to_shoal().is_err());
        let mut none = cli_create();
        none["TaskTemplate"]
            .as_object_mut()
            .unwrap()
            .remove("ContainerSpec");
        assert!(parse(none).to_shoal().is_err());
    }
}
