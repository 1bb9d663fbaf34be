//! A stack's service as the Docker Engine `ServiceSpec` that `docker stack
//! deploy` (docker/cli's `cli/compose/convert`) posts for it, and a stack's
//! network as shoal's create request.
//!
//! The mapping follows the docker CLI field by field: `command:` is
//! `Args` and `entrypoint:` is `Command`; the environment is sorted
//! `KEY=VALUE` lines; ports are sorted by published port; networks carry
//! the service's short name as an alias; secrets and configs are named,
//! the managers resolve their ids. What the API version shoal speaks
//! (1.41) has no field for is returned as a warning naming the key.

use std::time::Duration;

use super::error::StackError;
use crate::api::{ApiRequest, MTU_OPTION};
use crate::compose::{
    EndpointMode, FailureAction, HealthTest, Healthcheck, MountKind, Propagation, Protocol,
    PublishMode, RestartCondition, ServiceMode as ComposeMode, StackFileReference, StackMount,
    StackNetwork, StackService, UpdateConfig as ComposeUpdate, UpdateOrder,
};
use crate::engine::{
    BindOptions, ConfigReference, ContainerSpec, DnsConfig, Driver, EndpointSpec, GlobalJob,
    GlobalService, HealthConfig, Limit, Mount, NetworkAttachmentConfig, Placement,
    PlacementPreference, PortConfig, Privileges, ReplicatedJob, ReplicatedService,
    ResourceRequirements, Resources, RestartPolicy, SecretReference, SecretReferenceFileTarget,
    ServiceMode, ServiceSpec, SpreadOver, TaskSpec, TmpfsOptions, UpdateConfig, VolumeOptions,
};

/// A service's Docker spec, and what of the file it could not carry.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConversion {
    pub spec: ServiceSpec,
    /// Each names the service and the compose key.
    pub warnings: Vec<String>,
}

struct Cx<'a> {
    service: &'a str,
    warnings: Vec<String>,
}

impl Cx<'_> {
    fn warn(&mut self, key: &str, why: &str) {
        self.warnings.push(format!(
            "service {}: key \"{key}\" is not supported, ignored ({why})",
            self.service
        ));
    }

    fn int(&self, key: &'static str, value: u64) -> Result<i64, StackError> {
        i64::try_from(value).map_err(|_| StackError::Value {
            service: self.service.to_string(),
            key,
            reason: format!("{value} is too large"),
        })
    }

    fn nanos(&self, key: &'static str, value: Duration) -> Result<i64, StackError> {
        i64::try_from(value.as_nanos()).map_err(|_| StackError::Value {
            service: self.service.to_string(),
            key,
            reason: format!("{value:?} is too long"),
        })
    }

    fn opt_nanos(
        &self,
        key: &'static str,
        value: Option<Duration>,
    ) -> Result<Option<i64>, StackError> {
        value.map(|v| self.nanos(key, v)).transpose()
    }
}

/// The Docker spec `docker stack deploy` posts for `service`.
pub fn service_spec(service: &StackService) -> Result<ServiceConversion, StackError> {
    let file = &service.spec;
    let mut cx = Cx {
        service: &service.key,
        warnings: Vec::new(),
    };
    let (capability_add, capability_drop) = effective_caps(&file.cap_add, &file.cap_drop);
    let container = ContainerSpec {
        image: service.image.clone(),
        labels: Some(service.container_labels.clone()),
        command: file.entrypoint.clone().unwrap_or_default(),
        args: file.command.clone().unwrap_or_default(),
        hostname: file.hostname.clone().unwrap_or_default(),
        env: environment(file),
        dir: file.working_dir.clone().unwrap_or_default(),
        user: file.user.clone().unwrap_or_default(),
        groups: Vec::new(),
        privileges: Some(Privileges {
            credential_spec: None,
            selinux_context: None,
        }),
        init: file.init,
        stop_signal: file.stop_signal.clone().unwrap_or_default(),
        tty: file.tty,
        open_stdin: file.stdin_open,
        read_only: file.read_only,
        mounts: service
            .mounts
            .iter()
            .map(|m| mount(m, &mut cx))
            .collect::<Result<_, _>>()?,
        stop_grace_period: cx.opt_nanos("stop_grace_period", file.stop_grace_period)?,
        healthcheck: file
            .healthcheck
            .as_ref()
            .map(|h| healthcheck(h, &mut cx))
            .transpose()?,
        hosts: file
            .extra_hosts
            .iter()
            .map(|h| format!("{} {}", h.address, h.hostname))
            .collect(),
        dns_config: (!file.dns.is_empty()
            || !file.dns_search.is_empty()
            || !file.dns_options.is_empty())
        .then(|| DnsConfig {
            nameservers: file.dns.clone(),
            search: file.dns_search.clone(),
            options: file.dns_options.clone(),
        }),
        secrets: service
            .secrets
            .iter()
            .map(|r| SecretReference {
                file: Some(file_target(r)),
                secret_id: String::new(),
                secret_name: r.name.clone(),
            })
            .collect(),
        configs: service
            .configs
            .iter()
            .map(|r| ConfigReference {
                file: Some(file_target(r)),
                runtime: None,
                config_id: String::new(),
                config_name: r.name.clone(),
            })
            .collect(),
        isolation: String::new(),
        sysctls: None,
        capability_add,
        capability_drop,
        ulimits: Vec::new(),
    };
    let deploy = &file.deploy;
    let resources = ResourceRequirements {
        limits: deploy
            .resources
            .limits
            .map(|l| -> Result<Limit, StackError> {
                Ok(Limit {
                    nano_cpus: cx.int(
                        "deploy.resources.limits.cpus",
                        l.nano_cpus.unwrap_or_default(),
                    )?,
                    memory_bytes: cx.int(
                        "deploy.resources.limits.memory",
                        l.memory_bytes.unwrap_or_default(),
                    )?,
                    pids: cx.int("deploy.resources.limits.pids", l.pids.unwrap_or_default())?,
                })
            })
            .transpose()?,
        reservations: deploy
            .resources
            .reservations
            .map(|r| -> Result<Resources, StackError> {
                Ok(Resources {
                    nano_cpus: cx.int(
                        "deploy.resources.reservations.cpus",
                        r.nano_cpus.unwrap_or_default(),
                    )?,
                    memory_bytes: cx.int(
                        "deploy.resources.reservations.memory",
                        r.memory_bytes.unwrap_or_default(),
                    )?,
                    generic_resources: Vec::new(),
                })
            })
            .transpose()?,
    };
    let restart_policy = deploy
        .restart_policy
        .map(|p| -> Result<RestartPolicy, StackError> {
            Ok(RestartPolicy {
                condition: p
                    .condition
                    .map(|c| match c {
                        RestartCondition::None => "none",
                        RestartCondition::OnFailure => "on-failure",
                        RestartCondition::Any => "any",
                    })
                    .unwrap_or_default()
                    .to_string(),
                delay: cx.opt_nanos("deploy.restart_policy.delay", p.delay)?,
                max_attempts: p.max_attempts,
                window: cx.opt_nanos("deploy.restart_policy.window", p.window)?,
            })
        })
        .transpose()?;
    let placement = Placement {
        constraints: deploy.placement.constraints.clone(),
        preferences: deploy
            .placement
            .spread
            .iter()
            .map(|label| PlacementPreference {
                spread: Some(SpreadOver {
                    spread_descriptor: label.clone(),
                }),
            })
            .collect(),
        max_replicas: deploy.placement.max_replicas_per_node.unwrap_or_default(),
        platforms: Vec::new(),
        strategy: None,
    };
    let networks = service
        .networks
        .iter()
        .map(|a| NetworkAttachmentConfig {
            target: a.target.clone(),
            aliases: a.aliases.clone(),
            driver_opts: (!a.driver_opts.is_empty()).then(|| a.driver_opts.clone()),
        })
        .collect();
    let spec = ServiceSpec {
        name: service.name.clone(),
        labels: Some(service.labels.clone()),
        task_template: TaskSpec {
            container_spec: Some(container),
            plugin_spec: None,
            network_attachment_spec: None,
            resources: Some(resources),
            restart_policy,
            placement: Some(placement),
            networks,
            log_driver: None,
            force_update: 0,
            runtime: String::new(),
        },
        mode: mode(deploy.mode),
        update_config: deploy
            .update_config
            .as_ref()
            .map(|u| update_config(u, "deploy.update_config", &cx))
            .transpose()?,
        rollback_config: deploy
            .rollback_config
            .as_ref()
            .map(|u| update_config(u, "deploy.rollback_config", &cx))
            .transpose()?,
        networks: Vec::new(),
        endpoint_spec: Some(endpoint_spec(deploy.endpoint_mode, &file.ports)),
    };
    Ok(ServiceConversion {
        spec,
        warnings: cx.warnings,
    })
}

/// `KEY=VALUE` lines (a key without a value alone), sorted as strings.
fn environment(file: &crate::compose::Service) -> Vec<String> {
    let mut env: Vec<String> = file
        .environment
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        })
        .collect();
    env.sort();
    env
}

/// Docker's capability names: upper case with `CAP_`; `ALL` alone wins;
/// a capability both added and dropped is added.
fn effective_caps(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    fn normalize(caps: &[String]) -> std::collections::BTreeSet<String> {
        let set: std::collections::BTreeSet<String> = caps
            .iter()
            .map(|c| {
                let c = c.trim().to_ascii_uppercase();
                if c == "ALL" || c == "RESET" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        if set.contains("ALL") {
            std::collections::BTreeSet::from(["ALL".to_string()])
        } else {
            set
        }
    }
    let add = normalize(add);
    let drop = normalize(drop);
    let dropped = drop
        .iter()
        .filter(|c| !add.contains(*c) && *c != "RESET")
        .cloned()
        .collect();
    let added = add.into_iter().filter(|c| c != "RESET").collect();
    (added, dropped)
}

fn file_target(reference: &StackFileReference) -> SecretReferenceFileTarget {
    SecretReferenceFileTarget {
        name: reference.file_name.clone(),
        uid: reference.uid.clone(),
        gid: reference.gid.clone(),
        mode: reference.mode,
    }
}

fn mount(stack_mount: &StackMount, cx: &mut Cx) -> Result<Mount, StackError> {
    let m = &stack_mount.mount;
    let mut out = Mount {
        target: m.target.clone(),
        read_only: m.read_only,
        ..Mount::default()
    };
    match &m.kind {
        MountKind::Volume {
            source,
            nocopy,
            subpath,
        } => {
            out.kind = "volume".into();
            if subpath.is_some() {
                cx.warn(
                    "volumes.volume.subpath",
                    "the Engine API version shoal speaks (1.41) has no volume subpath",
                );
            }
            match source {
                // An anonymous volume: nothing but its target.
                None => {
                    if *nocopy {
                        out.volume_options = Some(VolumeOptions {
                            no_copy: true,
                            ..VolumeOptions::default()
                        });
                    }
                }
                Some(name) => {
                    out.source = name.clone();
                    let mut options = VolumeOptions {
                        no_copy: *nocopy,
                        ..VolumeOptions::default()
                    };
                    // A volume the stack owns carries its labels and driver;
                    // an external one only its name.
                    if let Some(volume) = &stack_mount.volume {
                        options.labels = Some(volume.labels.clone());
                        if volume.driver.is_some() || !volume.driver_opts.is_empty() {
                            options.driver_config = Some(Driver {
                                name: volume.driver.clone().unwrap_or_default(),
                                options: (!volume.driver_opts.is_empty())
                                    .then(|| volume.driver_opts.clone()),
                            });
                        }
                    }
                    out.volume_options = Some(options);
                }
            }
        }
        MountKind::Bind {
            source,
            propagation,
        } => {
            out.kind = "bind".into();
            out.source = source.display().to_string();
            out.bind_options = propagation.map(|p| BindOptions {
                propagation: match p {
                    Propagation::Shared => "shared",
                    Propagation::Rshared => "rshared",
                    Propagation::Slave => "slave",
                    Propagation::Rslave => "rslave",
                    Propagation::Private => "private",
                    Propagation::Rprivate => "rprivate",
                }
                .into(),
                non_recursive: false,
            });
        }
        MountKind::Tmpfs { size_bytes, mode } => {
            out.kind = "tmpfs".into();
            if size_bytes.is_some() || mode.is_some() {
                out.tmpfs_options = Some(TmpfsOptions {
                    size_bytes: cx.int("volumes.tmpfs.size", size_bytes.unwrap_or_default())?,
                    mode: mode.unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

fn healthcheck(check: &Healthcheck, cx: &mut Cx) -> Result<HealthConfig, StackError> {
    if check.test == HealthTest::Disabled {
        return Ok(HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        });
    }
    if check.start_interval.is_some() {
        cx.warn(
            "healthcheck.start_interval",
            "the Engine API version shoal speaks (1.41) has no start interval",
        );
    }
    let retries = check.retries.unwrap_or_default();
    Ok(HealthConfig {
        test: match &check.test {
            HealthTest::Inherit | HealthTest::Disabled => Vec::new(),
            HealthTest::Exec(args) => std::iter::once("CMD".to_string())
                .chain(args.iter().cloned())
                .collect(),
            HealthTest::Shell(command) => vec!["CMD-SHELL".into(), command.clone()],
        },
        interval: cx.nanos("healthcheck.interval", check.interval.unwrap_or_default())?,
        timeout: cx.nanos("healthcheck.timeout", check.timeout.unwrap_or_default())?,
        start_period: cx.nanos(
            "healthcheck.start_period",
            check.start_period.unwrap_or_default(),
        )?,
        retries: cx.int("healthcheck.retries", retries)?,
    })
}

fn mode(mode: ComposeMode) -> ServiceMode {
    match mode {
        ComposeMode::Replicated { replicas } => ServiceMode {
            replicated: Some(ReplicatedService { replicas }),
            ..ServiceMode::default()
        },
        ComposeMode::Global => ServiceMode {
            global: Some(GlobalService {}),
            ..ServiceMode::default()
        },
        ComposeMode::ReplicatedJob { replicas } => ServiceMode {
            replicated_job: Some(ReplicatedJob {
                max_concurrent: replicas,
                total_completions: replicas,
            }),
            ..ServiceMode::default()
        },
        ComposeMode::GlobalJob => ServiceMode {
            global_job: Some(GlobalJob {}),
            ..ServiceMode::default()
        },
    }
}

fn update_config(
    config: &ComposeUpdate,
    key: &'static str,
    cx: &Cx,
) -> Result<UpdateConfig, StackError> {
    Ok(UpdateConfig {
        // Docker's default when the file gives none.
        parallelism: config.parallelism.unwrap_or(1),
        delay: cx.nanos(key, config.delay.unwrap_or_default())?,
        failure_action: config
            .failure_action
            .map(|a| match a {
                FailureAction::Pause => "pause",
                FailureAction::Continue => "continue",
                FailureAction::Rollback => "rollback",
            })
            .unwrap_or_default()
            .into(),
        monitor: cx.nanos(key, config.monitor.unwrap_or_default())?,
        max_failure_ratio: config.max_failure_ratio.unwrap_or_default() as f32,
        order: config
            .order
            .map(|o| match o {
                UpdateOrder::StopFirst => "stop-first",
                UpdateOrder::StartFirst => "start-first",
            })
            .unwrap_or_default()
            .into(),
    })
}

/// `Mode` lower case as written (empty when not given), ports by published
/// port.
fn endpoint_spec(mode: Option<EndpointMode>, ports: &[crate::compose::Port]) -> EndpointSpec {
    let mut ports: Vec<PortConfig> = ports
        .iter()
        .map(|p| PortConfig {
            name: String::new(),
            protocol: match p.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            }
            .into(),
            target_port: u32::from(p.target),
            published_port: p.published.map(u32::from).unwrap_or_default(),
            publish_mode: match p.mode {
                PublishMode::Ingress => "ingress",
                PublishMode::Host => "host",
            }
            .into(),
        })
        .collect();
    ports.sort_by_key(|p| p.published_port);
    EndpointSpec {
        mode: match mode {
            None => String::new(),
            Some(EndpointMode::Vip) => "vip".into(),
            Some(EndpointMode::Dnsrr) => "dnsrr".into(),
        },
        ports,
    }
}

/// The request that creates a stack's network: an overlay with the stack's
/// labels. What shoal's overlays cannot honour is refused by its key.
pub fn network_request(network: &StackNetwork) -> Result<ApiRequest, StackError> {
    let refuse = |key: &str| {
        Err(StackError::NetworkOption {
            network: network.key.clone(),
            key: key.to_string(),
        })
    };
    if network.driver != "overlay" {
        return Err(StackError::NetworkDriver {
            network: network.key.clone(),
            driver: network.driver.clone(),
        });
    }
    if network.internal {
        return refuse("internal");
    }
    if network.enable_ipv6 == Some(true) {
        return refuse("enable_ipv6");
    }
    let mut mtu = None;
    for (key, value) in &network.driver_opts {
        if key == MTU_OPTION {
            mtu = Some(
                value
                    .parse::<u32>()
                    .map_err(|_| StackError::NetworkOption {
                        network: network.key.clone(),
                        key: format!("driver_opts.{key} `{value}` (not a number)"),
                    })?,
            );
        } else {
            return refuse(&format!("driver_opts.{key}"));
        }
    }
    let (mut subnet, mut gateway) = (None, None);
    if let Some(ipam) = &network.ipam {
        if !matches!(ipam.driver.as_deref(), None | Some("default")) {
            return refuse("ipam.driver");
        }
        if !ipam.options.is_empty() {
            return refuse("ipam.options");
        }
        if ipam.config.len() > 1 {
            return refuse("a second ipam.config");
        }
        if let Some(pool) = ipam.config.first() {
            if pool.ip_range.is_some() {
                return refuse("ipam.config.ip_range");
            }
            subnet = pool.subnet.clone();
            gateway = pool.gateway.clone();
        }
    }
    Ok(ApiRequest::NetworkCreate {
        name: network.name.clone(),
        driver: Some(network.driver.clone()),
        subnet,
        gateway,
        mtu,
        labels: network.labels.clone(),
        ingress: false,
        attachable: network.attachable,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::compose::{self, ComposeFile, Environment, LoadOptions, MemoryFiles, Stack};

    pub(crate) fn stack_from(text: &str, env: &[(&str, &str)], files: &MemoryFiles) -> Stack {
        let loaded = compose::load(
            &[ComposeFile {
                name: "stack.yml".into(),
                content: text.into(),
            }],
            &LoadOptions {
                working_dir: Path::new("/srv/app"),
                env: &Environment::from_vars(env.iter().copied()),
                files,
            },
        )
        .unwrap();
        compose::plan("app", &loaded.project).unwrap()
    }

    const SHOP: &str = r#"
version: "3.8"
services:
  web:
    image: ${REGISTRY}/web:${TAG:-1.0}
    command: httpd -f -p 80
    env_file: web.env
    environment:
      B: two
      A-B: x
      EMPTY:
    ports:
      - "8080:80"
      - target: 443
        published: 8443
        protocol: tcp
        mode: host
      - "53:53/udp"
    networks:
      front:
        aliases: [www]
      back:
    secrets: [db_pw, {source: cert, target: tls.pem, uid: '101', gid: '101', mode: 0400}]
    configs: [{source: site, target: /etc/site.conf}]
    healthcheck:
      test: ["CMD", "wget", "-q", "http://localhost/"]
      interval: 10s
      timeout: 2s
      retries: 3
      start_period: 5s
    cap_add: [net_admin, CAP_SYS_TIME]
    cap_drop: [all]
    stop_grace_period: 20s
    extra_hosts: ["db.local:10.0.0.5"]
    volumes: ['data:/data:ro', './static:/static', {type: tmpfs, target: /run, tmpfs: {size: 1m}}]
    deploy:
      mode: replicated
      replicas: 2
      endpoint_mode: vip
      labels: {owner: team}
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: '0.5', memory: 64M}
        reservations: {cpus: '0.25', memory: 32M}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.5}
      rollback_config: {parallelism: 0}
  db:
    image: postgres
    deploy: {mode: global, endpoint_mode: dnsrr}
    healthcheck: {test: pg_isready}
networks:
  front:
  back: {external: true, name: shared}
volumes:
  data: {labels: {backup: 'yes'}}
secrets:
  db_pw: {file: ./pw.txt}
  cert: {external: true}
configs:
  site: {content: hello}
"#;

    fn shop() -> Stack {
        stack_from(
            SHOP,
            &[("REGISTRY", "reg.local:5000")],
            &MemoryFiles::new().with("/srv/app/web.env", "A=1\nB=from-file\n"),
        )
    }

    fn convert(stack: &Stack, key: &str) -> serde_json::Value {
        let service = stack.services.iter().find(|s| s.key == key).unwrap();
        let converted = service_spec(service).unwrap();
        assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
        serde_json::to_value(&converted.spec).unwrap()
    }

    /// What docker 20.10's `stack deploy` posts for the same file (its
    /// `convert.Service`), field by field.
    #[test]
    fn a_service_becomes_the_spec_docker_posts() {
        let web = convert(&shop(), "web");
        assert_eq!(web["Name"], "app_web");
        assert_eq!(
            web["Labels"],
            json!({"owner": "team", "com.docker.stack.namespace": "app",
                   "com.docker.stack.image": "reg.local:5000/web:1.0"})
        );
        let container = &web["TaskTemplate"]["ContainerSpec"];
        assert_eq!(
            *container,
            json!({
                "Image": "reg.local:5000/web:1.0",
                "Labels": {"com.docker.stack.namespace": "app"},
                "Args": ["httpd", "-f", "-p", "80"],
                "Env": ["A-B=x", "A=1", "B=two", "EMPTY"],
                "Privileges": {"CredentialSpec": null, "SELinuxContext": null},
                "Mounts": [
                    {"Type": "volume", "Source": "app_data", "Target": "/data", "ReadOnly": true,
                     "VolumeOptions": {"Labels": {"backup": "yes", "com.docker.stack.namespace": "app"}}},
                    {"Type": "bind", "Source": "/srv/app/static", "Target": "/static"},
                    {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1048576}}
                ],
                "StopGracePeriod": 20_000_000_000i64,
                "Healthcheck": {"Test": ["CMD", "wget", "-q", "http://localhost/"],
                    "Interval": 10_000_000_000i64, "Timeout": 2_000_000_000i64,
                    "StartPeriod": 5_000_000_000i64, "Retries": 3},
                "Hosts": ["10.0.0.5 db.local"],
                "Secrets": [
                    {"File": {"Name": "db_pw", "UID": "0", "GID": "0", "Mode": 0o444},
                     "SecretID": "", "SecretName": "app_db_pw"},
                    {"File": {"Name": "tls.pem", "UID": "101", "GID": "101", "Mode": 0o400},
                     "SecretID": "", "SecretName": "cert"}
                ],
                "Configs": [
                    {"File": {"Name": "/etc/site.conf", "UID": "0", "GID": "0", "Mode": 0o444},
                     "ConfigID": "", "ConfigName": "app_site"}
                ],
                "CapabilityAdd": ["CAP_NET_ADMIN", "CAP_SYS_TIME"],
                "CapabilityDrop": ["ALL"]
            })
        );
        let task = &web["TaskTemplate"];
        assert_eq!(
            task["Resources"],
            json!({"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 67_108_864},
                   "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 33_554_432}})
        );
        assert_eq!(
            task["RestartPolicy"],
            json!({"Condition": "on-failure", "Delay": 5_000_000_000i64, "MaxAttempts": 3,
                   "Window": 120_000_000_000i64})
        );
        assert_eq!(
            task["Placement"],
            json!({"Constraints": ["node.role == worker"],
                   "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
                   "MaxReplicas": 1})
        );
        // By target; the service's short name is an alias on each.
        assert_eq!(
            task["Networks"],
            json!([{"Target": "app_front", "Aliases": ["www", "web"]},
                   {"Target": "shared", "Aliases": ["web"]}])
        );
        assert_eq!(web["Mode"], json!({"Replicated": {"Replicas": 2}}));
        assert_eq!(
            web["UpdateConfig"],
            json!({"Parallelism": 2, "Delay": 10_000_000_000i64, "FailureAction": "rollback",
                   "Monitor": 30_000_000_000i64, "MaxFailureRatio": 0.5, "Order": "start-first"})
        );
        assert_eq!(
            web["RollbackConfig"],
            json!({"Parallelism": 0, "MaxFailureRatio": 0, "Order": ""})
        );
        // By published port.
        assert_eq!(
            web["EndpointSpec"],
            json!({"Mode": "vip", "Ports": [
                {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 443, "PublishedPort": 8443, "PublishMode": "host"}]})
        );
    }

    #[test]
    fn modes_defaults_and_shell_health_checks() {
        let stack = shop();
        let db = convert(&stack, "db");
        assert_eq!(db["Mode"], json!({"Global": {}}));
        assert_eq!(db["EndpointSpec"], json!({"Mode": "dnsrr"}));
        assert_eq!(
            db["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "pg_isready"]})
        );
        // Nothing given: Docker's empty resources and placement, no
        // restart policy, update or rollback config, the default network.
        assert_eq!(db["TaskTemplate"]["Resources"], json!({}));
        assert_eq!(db["TaskTemplate"]["Placement"], json!({}));
        assert!(db["TaskTemplate"].get("RestartPolicy").is_none());
        assert!(db.get("UpdateConfig").is_none());
        assert_eq!(
            db["TaskTemplate"]["Networks"],
            json!([{"Target": "app_default", "Aliases": ["db"]}])
        );

        let jobs = stack_from(
            "services:\n  once:\n    image: x\n    deploy: {mode: replicated-job, replicas: 3}\n  \
             each:\n    image: x\n    deploy: {mode: global-job}\n  one:\n    image: x\n    \
             healthcheck: {disable: true}\n",
            &[],
            &MemoryFiles::new(),
        );
        assert_eq!(
            convert(&jobs, "once")["Mode"],
            json!({"ReplicatedJob": {"MaxConcurrent": 3, "TotalCompletions": 3}})
        );
        assert_eq!(convert(&jobs, "each")["Mode"], json!({"GlobalJob": {}}));
        let one = convert(&jobs, "one");
        // No replicas given: `{}`, which the managers read as one.
        assert_eq!(one["Mode"], json!({"Replicated": {}}));
        assert_eq!(
            one["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            json!({"Test": ["NONE"]})
        );
        assert_eq!(one["EndpointSpec"], json!({}));
    }

    #[test]
    fn what_api_1_41_cannot_carry_is_a_warning_naming_the_key() {
        let stack = stack_from(
            "services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, true], start_interval: 1s}\n",
            &[],
            &MemoryFiles::new(),
        );
        let converted = service_spec(&stack.services[0]).unwrap();
        assert_eq!(
            converted.warnings,
            ["service web: key \"healthcheck.start_interval\" is not supported, ignored (the Engine API version shoal speaks (1.41) has no start interval)"]
        );
    }

    #[test]
    fn a_plain_service_becomes_shoals_spec() {
        let stack = stack_from(
            "services:\n  web:\n    image: busybox\n    command: httpd -f\n    \
             environment: [A=1]\n    ports: ['8080:80']\n    deploy: {replicas: 3}\n",
            &[],
            &MemoryFiles::new(),
        );
        let docker = service_spec(&stack.services[0]).unwrap().spec;
        let shoal = docker.to_shoal().unwrap().spec;
        assert_eq!(shoal.name, "app_web");
        assert_eq!(
            shoal.mode,
            crate::objects::ServiceMode::Replicated { replicas: 3 }
        );
        assert_eq!(shoal.networks, ["app_default"]);
        assert_eq!(shoal.task.env, ["A=1"]);
        assert_eq!(shoal.ports[0].published, 8080);
        assert_eq!(shoal.labels[crate::compose::NAMESPACE_LABEL], "app");
    }

    #[test]
    fn networks_become_overlay_creates_and_refuse_what_overlays_lack() {
        let stack = stack_from(
            "services:\n  a:\n    image: x\n    networks: [n, m]\nnetworks:\n  n:\n    \
             driver_opts: {com.docker.network.driver.mtu: '1400'}\n    ipam: {config: [{subnet: 10.9.0.0/24, gateway: 10.9.0.1}]}\n    \
             labels: {tier: back}\n  m:\n    internal: true\n",
            &[],
            &MemoryFiles::new(),
        );
        let n = stack.networks.iter().find(|n| n.key == "n").unwrap();
        assert_eq!(
            network_request(n).unwrap(),
            ApiRequest::NetworkCreate {
                name: "app_n".into(),
                driver: Some("overlay".into()),
                subnet: Some("10.9.0.0/24".into()),
                gateway: Some("10.9.0.1".into()),
                mtu: Some(1400),
                labels: [
                    ("com.docker.stack.namespace".to_string(), "app".to_string()),
                    ("tier".to_string(), "back".to_string())
                ]
                .into(),
                ingress: false,
                attachable: false,
            }
        );
        let m = stack.networks.iter().find(|n| n.key == "m").unwrap();
        let err = network_request(m).unwrap_err();
        assert!(
            matches!(&err, StackError::NetworkOption { key, .. } if key == "internal"),
            "{err}"
        );
        let mut bridge = n.clone();
        bridge.driver = "bridge".into();
        assert!(matches!(
            network_request(&bridge),
            Err(StackError::NetworkDriver { .. })
        ));
    }
}
