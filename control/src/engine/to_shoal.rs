//! Docker's `ServiceSpec` (the body of `POST /services/create` and
//! `/services/{id}/update`) as shoal's spec: the reverse of
//! [`ServiceSpec::from_shoal`].
//!
//! A field shoal cannot honour is refused with its name
//! (`TaskTemplate.ContainerSpec.Mounts is not supported`), never dropped;
//! the values Docker's CLI sends by default (`Isolation: "default"`,
//! `Init: false`, empty objects) are accepted as "nothing asked".

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};

use super::service::STACK_NAMESPACE;
use super::{
    ContainerSpec, EndpointSpec, Labels, NetworkAttachmentConfig, PortConfig, ServiceSpec,
    TaskSpec, UpdateConfig,
};
use crate::objects::{
    self, Constraint, FailureAction, Protocol, RestartCondition, Strategy, UpdateOrder,
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
        let mut warnings = Vec::new();
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
            task: task_spec(task, self.labels.as_ref(), &mut warnings)?,
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
    warnings: &mut Vec<String>,
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
    let (command, env) = match &task.container_spec {
        Some(container) => container_spec(container, service_labels, warnings)?,
        None => (Vec::new(), Vec::new()),
    };
    let mut resources = objects::Resources::default();
    if let Some(r) = &task.resources {
        if let Some(limits) = &r.limits {
            refuse_if(limits.pids != 0, "TaskTemplate.Resources.Limits.Pids")?;
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
        command,
        env,
        resources,
        restart,
        placement,
        force_update: task.force_update,
        // GAP (issue #16): the Engine API still runs Command and Args with the
        // process runtime (see the image warning in `container_spec`).
        container: None,
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

/// The command (`Command` then `Args`) and environment.
fn container_spec(
    c: &ContainerSpec,
    service_labels: Option<&Labels>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<String>), SpecError> {
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
    refuse_if(
        !c.hostname.is_empty(),
        "TaskTemplate.ContainerSpec.Hostname",
    )?;
    refuse_if(!c.dir.is_empty(), "TaskTemplate.ContainerSpec.Dir")?;
    refuse_if(!c.user.is_empty(), "TaskTemplate.ContainerSpec.User")?;
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
    refuse_if(c.init == Some(true), "TaskTemplate.ContainerSpec.Init")?;
    refuse_if(
        !c.stop_signal.is_empty(),
        "TaskTemplate.ContainerSpec.StopSignal",
    )?;
    refuse_if(c.tty, "TaskTemplate.ContainerSpec.TTY")?;
    refuse_if(c.open_stdin, "TaskTemplate.ContainerSpec.OpenStdin")?;
    refuse_if(c.read_only, "TaskTemplate.ContainerSpec.ReadOnly")?;
    refuse_if(!c.mounts.is_empty(), "TaskTemplate.ContainerSpec.Mounts")?;
    refuse_if(
        c.healthcheck.is_some(),
        "TaskTemplate.ContainerSpec.Healthcheck",
    )?;
    refuse_if(!c.hosts.is_empty(), "TaskTemplate.ContainerSpec.Hosts")?;
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
    refuse_if(
        !c.capability_add.is_empty(),
        "TaskTemplate.ContainerSpec.CapabilityAdd",
    )?;
    refuse_if(
        !c.capability_drop.is_empty(),
        "TaskTemplate.ContainerSpec.CapabilityDrop",
    )?;
    refuse_if(!c.ulimits.is_empty(), "TaskTemplate.ContainerSpec.Ulimits")?;
    if let Some(grace) = c.stop_grace_period {
        millis("TaskTemplate.ContainerSpec.StopGracePeriod", grace)?;
        if grace != 0 {
            warnings.push(format!(
                "StopGracePeriod {}s is not applied: shoal stops tasks with its own grace period",
                grace / 1_000_000_000
            ));
        }
    }
    if !c.image.is_empty() {
        // GAP (issue #15): the spec has no image field yet; until it does,
        // the command runs with the process runtime, and the caller is told.
        warnings.push(format!(
            "image {} is not run: shoal runs the service's command (Command, then Args) \
             on the host until images are wired",
            c.image
        ));
    }
    let command = c.command.iter().chain(&c.args).cloned().collect();
    Ok((command, c.env.clone()))
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
        assert_eq!(spec.task.command, ["httpd", "-f"]);
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
        assert_eq!(converted.warnings.len(), 1, "{:?}", converted.warnings);
        assert!(converted.warnings[0].contains("image busybox is not run"));
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
                serde_json::json!([{"Type": "bind", "Source": "/", "Target": "/h"}]),
                "TaskTemplate.ContainerSpec.Mounts",
            ),
            (
                "/TaskTemplate/ContainerSpec/User",
                serde_json::json!("nobody"),
                "TaskTemplate.ContainerSpec.User",
            ),
            (
                "/Mode",
                serde_json::json!({"ReplicatedJob": {}}),
                "Mode.ReplicatedJob",
            ),
            (
                "/TaskTemplate/Resources/Limits/Pids",
                serde_json::json!(10),
                "TaskTemplate.Resources.Limits.Pids",
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
}
