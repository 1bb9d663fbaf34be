//! A service's `deploy:` section: mode and replicas, placement, resources,
//! restart, update and rollback policies, service labels and the endpoint
//! mode. Also the legacy service-level `restart:`, which Docker reads as a
//! restart policy when `deploy.restart_policy` is absent.

use super::model::{
    Deploy, EndpointMode, FailureAction, Limits, Placement, Reservations, Resources,
    RestartCondition, RestartPolicy, ServiceMode, UpdateConfig, UpdateOrder,
};
use super::path::KeyPath;
use super::read::{
    bytes, conflict, duration, float, invalid, labels, mapping, string, string_list, uint,
    wrong_type, Cx, Result,
};
use super::units::parse_nano_cpus;
use super::yaml::{Node, Value};

pub fn deploy(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Deploy> {
    let mut deploy = Deploy::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(deploy);
    };
    let mut mode = None;
    let mut replicas = None;
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "mode" => mode = string(value, &path)?.map(|m| (m, value)),
            "replicas" => replicas = uint(value, &path)?.map(|r| (r, value)),
            "labels" => deploy.labels = labels(value, &path)?,
            "placement" => deploy.placement = placement(value, &path, cx)?,
            "resources" => deploy.resources = resources(value, &path, cx)?,
            "restart_policy" => deploy.restart_policy = restart_policy(value, &path, cx)?,
            "update_config" => deploy.update_config = update_config(value, &path, cx)?,
            "rollback_config" => deploy.rollback_config = update_config(value, &path, cx)?,
            "endpoint_mode" => {
                deploy.endpoint_mode = match string(value, &path)?.as_deref() {
                    None => None,
                    Some("vip") => Some(EndpointMode::Vip),
                    Some("dnsrr") => Some(EndpointMode::Dnsrr),
                    Some(other) => return Err(invalid(value, &path, other, "vip or dnsrr")),
                }
            }
            _ => cx.other(key, value, &path, &[]),
        }
    }
    let count = replicas.map(|(r, _)| r);
    deploy.mode = match mode {
        None => ServiceMode::Replicated { replicas: count },
        Some((name, value)) => match name.as_str() {
            "replicated" => ServiceMode::Replicated { replicas: count },
            "replicated-job" => ServiceMode::ReplicatedJob { replicas: count },
            "global" | "global-job" => {
                if let Some((_, replicas_node)) = replicas {
                    return Err(conflict(
                        replicas_node,
                        &path.key("replicas"),
                        format!("replicas can only be used with mode replicated or replicated-job, not {name}"),
                    ));
                }
                if name == "global" {
                    ServiceMode::Global
                } else {
                    ServiceMode::GlobalJob
                }
            }
            other => {
                return Err(invalid(
                    value,
                    &path.key("mode"),
                    other,
                    "replicated, global, replicated-job or global-job",
                ))
            }
        },
    };
    Ok(deploy)
}

fn placement(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Placement> {
    let mut placement = Placement::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(placement);
    };
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "constraints" => placement.constraints = string_list(value, &path)?,
            "max_replicas_per_node" => placement.max_replicas_per_node = uint(value, &path)?,
            "preferences" => {
                let Value::Seq(items) = &value.value else {
                    if value.is_null() {
                        continue;
                    }
                    return Err(wrong_type(value, &path, "a list of {spread: LABEL}"));
                };
                for (i, item) in items.iter().enumerate() {
                    let item_path = path.index(i);
                    let Some(preference) = mapping(item, &item_path)? else {
                        continue;
                    };
                    for (kind, label) in preference.iter() {
                        let label_path = item_path.key(kind);
                        match kind {
                            "spread" => {
                                if let Some(label) = string(label, &label_path)? {
                                    placement.spread.push(label);
                                }
                            }
                            _ => cx.other(kind, label, &label_path, &[]),
                        }
                    }
                }
            }
            _ => cx.other(key, value, &path, &[]),
        }
    }
    Ok(placement)
}

fn cpus(node: &Node, path: &KeyPath) -> Result<Option<u64>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    parse_nano_cpus(&text).map(Some).ok_or_else(|| {
        invalid(
            node,
            path,
            &text,
            "a number of CPUs such as 0.5 or 2, at most 9 decimals",
        )
    })
}

fn resources(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Resources> {
    let mut resources = Resources::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(resources);
    };
    for (key, value) in map.iter() {
        let path = path.key(key);
        let Some(section) = (match key {
            "limits" | "reservations" => mapping(value, &path)?,
            _ => {
                cx.other(key, value, &path, &[]);
                continue;
            }
        }) else {
            continue;
        };
        let mut nano_cpus = None;
        let mut memory_bytes = None;
        let mut pids = None;
        for (field, field_value) in section.iter() {
            let field_path = path.key(field);
            match (key, field) {
                (_, "cpus") => nano_cpus = cpus(field_value, &field_path)?,
                (_, "memory") => memory_bytes = bytes(field_value, &field_path)?,
                ("limits", "pids") => pids = uint(field_value, &field_path)?,
                _ => cx.other(
                    field,
                    field_value,
                    &field_path,
                    &[
                        ("devices", Some("shoal schedules no devices (GPUs)")),
                        (
                            "generic_resources",
                            Some("shoal schedules no generic resources"),
                        ),
                    ],
                ),
            }
        }
        if key == "limits" {
            resources.limits = Some(Limits {
                nano_cpus,
                memory_bytes,
                pids,
            });
        } else {
            resources.reservations = Some(Reservations {
                nano_cpus,
                memory_bytes,
            });
        }
    }
    Ok(resources)
}

fn restart_policy(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Option<RestartPolicy>> {
    let Some(map) = mapping(node, path)? else {
        return Ok(None);
    };
    let mut policy = RestartPolicy::default();
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "condition" => {
                policy.condition = match string(value, &path)?.as_deref() {
                    None => None,
                    Some("none") => Some(RestartCondition::None),
                    Some("on-failure") => Some(RestartCondition::OnFailure),
                    Some("any") => Some(RestartCondition::Any),
                    Some(other) => {
                        return Err(invalid(value, &path, other, "none, on-failure or any"))
                    }
                }
            }
            "delay" => policy.delay = duration(value, &path)?,
            "max_attempts" => policy.max_attempts = uint(value, &path)?,
            "window" => policy.window = duration(value, &path)?,
            _ => cx.other(key, value, &path, &[]),
        }
    }
    Ok(Some(policy))
}

fn update_config(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Option<UpdateConfig>> {
    let Some(map) = mapping(node, path)? else {
        return Ok(None);
    };
    let mut config = UpdateConfig::default();
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "parallelism" => config.parallelism = uint(value, &path)?,
            "delay" => config.delay = duration(value, &path)?,
            "monitor" => config.monitor = duration(value, &path)?,
            "failure_action" => {
                config.failure_action = match string(value, &path)?.as_deref() {
                    None => None,
                    Some("pause") => Some(FailureAction::Pause),
                    Some("continue") => Some(FailureAction::Continue),
                    Some("rollback") => Some(FailureAction::Rollback),
                    Some(other) => {
                        return Err(invalid(value, &path, other, "pause, continue or rollback"))
                    }
                }
            }
            "max_failure_ratio" => {
                config.max_failure_ratio = match float(value, &path)? {
                    Some(ratio) if !(0.0..=1.0).contains(&ratio) => {
                        return Err(invalid(
                            value,
                            &path,
                            &ratio.to_string(),
                            "a ratio from 0 to 1",
                        ))
                    }
                    ratio => ratio,
                }
            }
            "order" => {
                config.order = match string(value, &path)?.as_deref() {
                    None => None,
                    Some("stop-first") => Some(UpdateOrder::StopFirst),
                    Some("start-first") => Some(UpdateOrder::StartFirst),
                    Some(other) => {
                        return Err(invalid(value, &path, other, "stop-first or start-first"))
                    }
                }
            }
            _ => cx.other(key, value, &path, &[]),
        }
    }
    Ok(Some(config))
}

/// Reads the legacy `restart:` (`no`, `always`, `unless-stopped`,
/// `on-failure[:N]`) as Docker's stack deploy does.
pub fn legacy_restart(node: &Node, path: &KeyPath) -> Result<Option<RestartPolicy>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text.as_str(), None),
    };
    let max_attempts = match count {
        None => None,
        Some(count) => match count.parse::<u64>() {
            Ok(0) => None,
            Ok(n) if name == "on-failure" => Some(n),
            _ => {
                return Err(invalid(
                    node,
                    path,
                    &text,
                    "no, always, unless-stopped, on-failure or on-failure:N",
                ))
            }
        },
    };
    let condition = match name {
        "no" | "" => return Ok(None),
        "always" | "unless-stopped" => RestartCondition::Any,
        "on-failure" => RestartCondition::OnFailure,
        _ => {
            return Err(invalid(
                node,
                path,
                &text,
                "no, always, unless-stopped, on-failure or on-failure:N",
            ))
        }
    };
    Ok(Some(RestartPolicy {
        condition: Some(condition),
        max_attempts,
        ..RestartPolicy::default()
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::compose::error::{Subject, Warning};
    use crate::compose::yaml;

    fn node(text: &str) -> Node {
        let root = yaml::parse(&Arc::from("t.yml"), &format!("deploy:\n{text}")).unwrap();
        root.as_map().unwrap().get("deploy").unwrap().clone()
    }

    fn read(text: &str) -> (Result<Deploy>, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut cx = Cx {
            subject: Subject::Service("web".into()),
            warnings: &mut warnings,
        };
        let path = KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("deploy");
        let result = deploy(&node(text), &path, &mut cx);
        (result, warnings)
    }

    #[test]
    fn every_deploy_key_is_read() {
        let (deploy, warnings) = read(
            "  mode: replicated
  replicas: 6
  labels: [FOO=BAR]
  endpoint_mode: dnsrr
  placement:
    constraints: [node.role == worker, node.labels.zone == a]
    preferences: [{spread: node.labels.az}]
    max_replicas_per_node: 5
  resources:
    limits: {cpus: '0.5', memory: 50M, pids: 100}
    reservations:
      cpus: 0.25
      memory: 20M
      generic_resources: [{discrete_resource_spec: {kind: gpu, value: 2}}]
      devices: [{capabilities: [gpu]}]
  restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
  update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 1m, max_failure_ratio: 0.3, order: start-first}
  rollback_config: {parallelism: 0, order: stop-first}
",
        );
        let deploy = deploy.unwrap();
        assert_eq!(deploy.mode, ServiceMode::Replicated { replicas: Some(6) });
        assert_eq!(deploy.labels.get("FOO").map(String::as_str), Some("BAR"));
        assert_eq!(deploy.endpoint_mode, Some(EndpointMode::Dnsrr));
        assert_eq!(
            deploy.placement,
            Placement {
                constraints: vec!["node.role == worker".into(), "node.labels.zone == a".into()],
                spread: vec!["node.labels.az".into()],
                max_replicas_per_node: Some(5),
            }
        );
        assert_eq!(
            deploy.resources,
            Resources {
                limits: Some(Limits {
                    nano_cpus: Some(500_000_000),
                    memory_bytes: Some(50 << 20),
                    pids: Some(100)
                }),
                reservations: Some(Reservations {
                    nano_cpus: Some(250_000_000),
                    memory_bytes: Some(20 << 20)
                }),
            }
        );
        assert_eq!(
            deploy.restart_policy,
            Some(RestartPolicy {
                condition: Some(RestartCondition::OnFailure),
                delay: Some(Duration::from_secs(5)),
                max_attempts: Some(3),
                window: Some(Duration::from_secs(120)),
            })
        );
        assert_eq!(
            deploy.update_config,
            Some(UpdateConfig {
                parallelism: Some(2),
                delay: Some(Duration::from_secs(10)),
                failure_action: Some(FailureAction::Rollback),
                monitor: Some(Duration::from_secs(60)),
                max_failure_ratio: Some(0.3),
                order: Some(UpdateOrder::StartFirst),
            })
        );
        assert_eq!(
            deploy.rollback_config,
            Some(UpdateConfig {
                parallelism: Some(0),
                order: Some(UpdateOrder::StopFirst),
                ..UpdateConfig::default()
            })
        );
        let keys: Vec<_> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            keys,
            [
                "t.yml:15: service web: key \"deploy.resources.reservations.generic_resources\" is not supported, ignored (shoal schedules no generic resources)",
                "t.yml:16: service web: key \"deploy.resources.reservations.devices\" is not supported, ignored (shoal schedules no devices (GPUs))",
            ]
        );
    }

    #[test]
    fn modes_and_their_conflicts() {
        assert_eq!(
            read("  mode: global\n").0.unwrap().mode,
            ServiceMode::Global
        );
        assert_eq!(
            read("  mode: global-job\n").0.unwrap().mode,
            ServiceMode::GlobalJob
        );
        assert_eq!(
            read("  mode: replicated-job\n  replicas: 3\n")
                .0
                .unwrap()
                .mode,
            ServiceMode::ReplicatedJob { replicas: Some(3) }
        );
        assert_eq!(
            read("  labels: {a: }\n").0.unwrap().mode,
            ServiceMode::Replicated { replicas: None }
        );
        let err = read("  mode: global\n  replicas: 2\n").0.unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yml:3: services.web.deploy.replicas: replicas can only be used with mode replicated or replicated-job, not global"
        );
        for bad in [
            "  mode: daemonset\n",
            "  replicas: two\n",
            "  endpoint_mode: round-robin\n",
            "  restart_policy: {condition: always}\n",
            "  update_config: {failure_action: panic}\n",
            "  update_config: {max_failure_ratio: 2}\n",
            "  update_config: {order: random}\n",
            "  resources: {limits: {cpus: lots}}\n",
            "  resources: {limits: {memory: 1 gallon}}\n",
            "  placement: {preferences: spread}\n",
        ] {
            let err = read(bad).0.expect_err(bad);
            assert!(
                err.to_string().contains("services.web.deploy."),
                "{bad}: {err}"
            );
        }
        let (_, warnings) = read("  placement: {constraints: [], zones: 3}\n  bogus: 1\n");
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0]
            .to_string()
            .contains("unknown key \"deploy.placement.zones\""));
    }

    #[test]
    fn legacy_restart_maps_as_docker_does() {
        let path = KeyPath::root().key("restart");
        let read = |text: &str| {
            let root = yaml::parse(&Arc::from("t.yml"), &format!("r: {text}\n")).unwrap();
            legacy_restart(root.as_map().unwrap().get("r").unwrap(), &path)
        };
        assert_eq!(read("'no'").unwrap(), None);
        assert_eq!(
            read("always").unwrap().unwrap().condition,
            Some(RestartCondition::Any)
        );
        assert_eq!(
            read("unless-stopped").unwrap().unwrap().condition,
            Some(RestartCondition::Any)
        );
        let on_failure = read("on-failure:3").unwrap().unwrap();
        assert_eq!(on_failure.condition, Some(RestartCondition::OnFailure));
        assert_eq!(on_failure.max_attempts, Some(3));
        assert!(read("sometimes").is_err());
        assert!(read("always:3").is_err());
    }
}
