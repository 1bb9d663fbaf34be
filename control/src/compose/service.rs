//! One entry of `services:`: every key Compose defines is either read into
//! the model or reported. The environment is resolved here: `env_file:`
//! contents, then `environment:` over them, then keys without a value taken
//! from the caller's environment.

use std::collections::BTreeMap;

use super::deploy::{deploy, legacy_restart};
use super::dotenv::{parse_env_file, Environment};
use super::error::{ComposeError, Subject};
use super::model::{ExtraHost, Service};
use super::mounts::{tmpfs, volumes, HostPaths};
use super::parts::{file_references, healthcheck, service_networks};
use super::path::KeyPath;
use super::ports::ports;
use super::read::{
    boolean, command, duration, invalid, key_values, labels, mapping, string, string_list,
    string_or_list, wrong_type, Cx, Result,
};
use super::source::FileReader;
use super::yaml::{Node, Value};

/// What reading a service needs besides its node.
pub struct ServiceContext<'a> {
    pub paths: HostPaths<'a>,
    pub env: &'a Environment,
    pub files: &'a dyn FileReader,
}

/// Compose keys of a service that shoal reads but does not act on, with
/// what to do instead when there is something.
pub const UNSUPPORTED_KEYS: &[(&str, Option<&str>)] = &[
    ("annotations", None),
    ("attach", None),
    ("blkio_config", None),
    (
        "build",
        Some("shoal does not build images: build and push it, then set image:"),
    ),
    ("cgroup", None),
    ("cgroup_parent", None),
    ("cgroupns_mode", None),
    ("container_name", Some("Swarm names each task itself")),
    ("cpu_count", Some("use deploy.resources.limits.cpus")),
    ("cpu_percent", Some("use deploy.resources.limits.cpus")),
    ("cpu_period", Some("use deploy.resources.limits.cpus")),
    ("cpu_quota", Some("use deploy.resources.limits.cpus")),
    ("cpu_rt_period", None),
    ("cpu_rt_runtime", None),
    ("cpu_shares", Some("use deploy.resources.limits.cpus")),
    ("cpus", Some("use deploy.resources.limits.cpus")),
    ("cpuset", None),
    ("credential_spec", Some("Windows only")),
    (
        "depends_on",
        Some("Swarm starts services in any order; make them wait for each other"),
    ),
    ("develop", None),
    ("device_cgroup_rules", None),
    ("devices", None),
    ("domainname", None),
    ("driver_opts", None),
    (
        "expose",
        Some("tasks on the same network reach each other on any port"),
    ),
    (
        "extends",
        Some("copy the base service's keys, or use YAML anchors"),
    ),
    ("external_links", None),
    ("gpus", None),
    ("group_add", None),
    ("ipc", None),
    ("isolation", Some("Windows only")),
    ("label_file", None),
    (
        "links",
        Some("services on the same network reach each other by name"),
    ),
    ("logging", Some("shoal keeps task logs itself")),
    ("mac_address", None),
    ("mem_limit", Some("use deploy.resources.limits.memory")),
    (
        "mem_reservation",
        Some("use deploy.resources.reservations.memory"),
    ),
    ("mem_swappiness", None),
    ("memswap_limit", None),
    ("models", None),
    (
        "network_mode",
        Some("tasks join the stack's overlay networks"),
    ),
    ("oom_kill_disable", None),
    ("oom_score_adj", None),
    ("pid", None),
    ("pids_limit", Some("use deploy.resources.limits.pids")),
    ("platform", None),
    ("post_start", None),
    ("pre_stop", None),
    ("privileged", Some("Swarm services cannot be privileged")),
    ("profiles", None),
    ("provider", None),
    ("pull_policy", None),
    ("runtime", None),
    ("scale", Some("use deploy.replicas")),
    ("security_opt", None),
    ("shm_size", None),
    ("storage_opt", None),
    ("sysctls", None),
    ("ulimits", None),
    ("use_api_socket", None),
    ("userns_mode", None),
    ("uts", None),
    (
        "volume_driver",
        Some("set the driver on the top-level volume"),
    ),
    ("volumes_from", Some("share a named volume instead")),
];

pub fn service(
    node: &Node,
    path: &KeyPath,
    context: &ServiceContext,
    cx: &mut Cx,
) -> Result<Service> {
    let mut service = Service::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(service);
    };
    let mut env_files = Vec::new();
    let mut environment = Vec::new();
    let mut restart = None;
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "image" => service.image = string(value, &path)?,
            "command" => service.command = command(value, &path)?,
            "entrypoint" => service.entrypoint = command(value, &path)?,
            "environment" => environment = key_values(value, &path)?,
            "env_file" => env_files = env_file_entries(value, &path, context, cx)?,
            "ports" => service.ports = ports(value, &path, cx)?,
            "networks" => service.networks = service_networks(value, &path, cx)?,
            "volumes" => service
                .mounts
                .extend(volumes(value, &path, context.paths, cx)?),
            "tmpfs" => service.mounts.extend(tmpfs(value, &path, cx)?),
            "secrets" => service.secrets = file_references(value, &path, cx)?,
            "configs" => service.configs = file_references(value, &path, cx)?,
            "healthcheck" => service.healthcheck = healthcheck(value, &path, cx)?,
            "hostname" => service.hostname = string(value, &path)?,
            "user" => service.user = string(value, &path)?,
            "working_dir" => service.working_dir = string(value, &path)?,
            "labels" => service.labels = labels(value, &path)?,
            "stop_signal" => service.stop_signal = string(value, &path)?,
            "stop_grace_period" => service.stop_grace_period = duration(value, &path)?,
            "init" => service.init = boolean(value, &path)?,
            "read_only" => service.read_only = boolean(value, &path)?.unwrap_or(false),
            "tty" => service.tty = boolean(value, &path)?.unwrap_or(false),
            "stdin_open" => service.stdin_open = boolean(value, &path)?.unwrap_or(false),
            "cap_add" => service.cap_add = string_list(value, &path)?,
            "cap_drop" => service.cap_drop = string_list(value, &path)?,
            "dns" => service.dns = string_or_list(value, &path)?,
            "dns_search" => service.dns_search = string_or_list(value, &path)?,
            "dns_opt" => service.dns_options = string_or_list(value, &path)?,
            "extra_hosts" => service.extra_hosts = extra_hosts(value, &path)?,
            "deploy" => service.deploy = deploy(value, &path, cx)?,
            "restart" => {
                restart = legacy_restart(value, &path)?.map(|policy| (policy, value, path))
            }
            _ => cx.other(key, value, &path, UNSUPPORTED_KEYS),
        }
    }
    if let Some((policy, node, path)) = restart {
        if service.deploy.restart_policy.is_some() {
            let text = node.as_scalar().unwrap_or_default().to_string();
            cx.ignored_value(
                node,
                &path,
                &text,
                "deploy.restart_policy is set and wins over restart",
            );
        } else {
            service.deploy.restart_policy = Some(policy);
        }
    }
    service.environment = resolve_environment(env_files, environment, context.env);
    Ok(service)
}

/// The variables of the `env_file:`s, in order (missing optional files
/// are skipped).
fn env_file_entries(
    node: &Node,
    path: &KeyPath,
    context: &ServiceContext,
    cx: &mut Cx,
) -> Result<Vec<(String, Option<String>)>> {
    let items: Vec<(Node, KeyPath)> = match &node.value {
        Value::Null => Vec::new(),
        Value::Scalar(_) => vec![(node.clone(), path.clone())],
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.clone(), path.index(i)))
            .collect(),
        Value::Map(_) => return Err(wrong_type(node, path, "a file name or a list of them")),
    };
    let mut entries = Vec::new();
    for (item, item_path) in items {
        let (file, required) = match &item.value {
            Value::Scalar(file) => (file.clone(), true),
            Value::Map(map) => {
                let mut file = None;
                let mut required = true;
                for (key, value) in map.iter() {
                    let key_path = item_path.key(key);
                    match key {
                        "path" => file = string(value, &key_path)?,
                        "required" => required = boolean(value, &key_path)?.unwrap_or(true),
                        "format" => {
                            if let Some(format) = string(value, &key_path)? {
                                cx.ignored_value(
                                    value,
                                    &key_path,
                                    &format,
                                    "only the KEY=VALUE format is read",
                                );
                            }
                        }
                        _ => cx.other(key, value, &key_path, &[]),
                    }
                }
                let file = file.ok_or_else(|| super::read::missing(&item, &item_path, "path"))?;
                (file, required)
            }
            _ => {
                return Err(wrong_type(
                    &item,
                    &item_path,
                    "a file name or {path, required}",
                ))
            }
        };
        let resolved = context.paths.resolve(&file);
        let Some(text) = context.files.read(&resolved)? else {
            if required {
                let service = match &cx.subject {
                    Subject::Service(name) => name.clone(),
                    other => other.to_string(),
                };
                return Err(ComposeError::MissingEnvFile {
                    at: item.at.clone(),
                    service,
                    path: resolved,
                });
            }
            continue;
        };
        let lookup = |name: &str| context.env.get(name).map(str::to_string);
        entries.extend(parse_env_file(
            &resolved.display().to_string(),
            &text,
            &lookup,
        )?);
    }
    Ok(entries)
}

fn resolve_environment(
    env_files: Vec<(String, Option<String>)>,
    environment: Vec<(String, Option<String>)>,
    env: &Environment,
) -> BTreeMap<String, Option<String>> {
    let mut resolved = BTreeMap::new();
    for (key, value) in env_files.into_iter().chain(environment) {
        let value = value.or_else(|| env.get(&key).map(str::to_string));
        resolved.insert(key, value);
    }
    resolved
}

/// `extra_hosts:` as `host:ip` / `host=ip` strings or a `host: ip` mapping.
fn extra_hosts(node: &Node, path: &KeyPath) -> Result<Vec<ExtraHost>> {
    let mut hosts = Vec::new();
    let mut add = |host: &str, address: &str, at: &Node, path: &KeyPath| {
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || address.is_empty() {
            return Err(invalid(
                at,
                path,
                &format!("{host}:{address}"),
                "HOST:ADDRESS or HOST=ADDRESS",
            ));
        }
        hosts.push(ExtraHost {
            hostname: host.to_string(),
            address: address.to_string(),
        });
        Ok(())
    };
    match &node.value {
        Value::Null => {}
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = path.index(i);
                let Value::Scalar(text) = &item.value else {
                    return Err(wrong_type(item, &item_path, "a string HOST:ADDRESS"));
                };
                let (host, address) = text
                    .split_once('=')
                    .or_else(|| text.split_once(':'))
                    .ok_or_else(|| {
                        invalid(item, &item_path, text, "HOST:ADDRESS or HOST=ADDRESS")
                    })?;
                add(host, address, item, &item_path)?;
            }
        }
        Value::Map(map) => {
            for (host, value) in map.iter() {
                let value_path = path.key(host);
                for address in string_or_list(value, &value_path)? {
                    add(host, &address, value, &value_path)?;
                }
            }
        }
        Value::Scalar(_) => {
            return Err(wrong_type(
                node,
                path,
                "a list of HOST:ADDRESS or a mapping",
            ))
        }
    }
    Ok(hosts)
}
