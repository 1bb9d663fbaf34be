//! What the task runner asks of the runtime for one assignment: the
//! managers' task spec turned into a [`Launch`], a container's image and
//! Docker options into the runtime's [`ContainerConfig`]. Pure: no I/O.

use shoal_control::error_chain::ErrorChain;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal_control::api::Assignment;
use shoal_control::objects::{ContainerSpec, HealthSpec, MountKind, MountSpec};

use crate::executor::container::{HealthConfig, Mount};
use crate::executor::{ContainerConfig, Launch};
use crate::image::Credentials;

/// The launch of `assignment` in the sandbox `netns`.
pub fn launch(assignment: &Assignment, netns: PathBuf, resolv_conf: String) -> Launch {
    let spec = &assignment.spec;
    Launch {
        task_id: assignment.task_id.clone(),
        command: spec.command.clone(),
        env: task_env(assignment),
        netns,
        resolv_conf,
        limit_nano_cpus: spec.resources.limit_nano_cpus,
        limit_memory: spec.resources.limit_memory,
        container: spec
            .container
            .as_ref()
            .map(|c| container_config(assignment, c)),
        secrets: assignment.secrets.clone(),
        configs: assignment.configs.clone(),
    }
}

fn container_config(assignment: &Assignment, c: &ContainerSpec) -> ContainerConfig {
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ContainerConfig {
        image: c.image.clone(),
        credentials: credentials(assignment, c),
        args: c.args.clone(),
        hostname: if c.hostname.is_empty() {
            // Docker's default: the container id's short form.
            assignment.task_id.chars().take(12).collect()
        } else {
            c.hostname.clone()
        },
        user: optional(&c.user),
        workdir: optional(&c.workdir),
        read_only: c.read_only,
        cap_add: c.cap_add.clone(),
        cap_drop: c.cap_drop.clone(),
        init: c.init,
        pids_limit: i64::try_from(c.pids_limit).unwrap_or(i64::MAX),
        mounts: c.mounts.iter().map(mount).collect(),
        stop_signal: optional(&c.stop_signal),
        healthcheck: c.healthcheck.as_ref().map(health_config),
        addresses: assignment
            .networks
            .iter()
            .map(|a| IpAddr::V4(a.ip))
            .collect(),
        extra_hosts: extra_hosts(&c.hosts),
    }
}

/// `IP NAME [ALIAS...]` lines as (name, address) pairs; the managers
/// checked them, a line that does not read is skipped.
fn extra_hosts(lines: &[String]) -> Vec<(String, IpAddr)> {
    lines
        .iter()
        .filter_map(|line| shoal_control::objects::host_entry(line))
        .flat_map(|(ip, names)| names.into_iter().map(move |n| (n.to_string(), ip)))
        .collect()
}

/// How long the task has between its stop signal and SIGKILL.
pub fn stop_grace(assignment: Option<&Assignment>, default: Duration) -> Duration {
    assignment
        .and_then(|a| a.spec.container.as_ref())
        .and_then(|c| c.stop_grace_period_ms)
        .map_or(default, Duration::from_millis)
}

/// A `--mount` as the container runtime takes it.
fn mount(m: &MountSpec) -> Mount {
    match m.kind {
        MountKind::Bind => Mount::Bind {
            source: PathBuf::from(&m.source),
            target: m.target.clone(),
            read_only: m.read_only,
        },
        MountKind::Volume => Mount::Volume {
            name: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        },
        MountKind::Tmpfs => Mount::Tmpfs {
            target: m.target.clone(),
            size: m.tmpfs_size,
            mode: m.tmpfs_mode,
        },
    }
}

/// What `--with-registry-auth` carried for the pull; unreadable ones are
/// logged (without their content) and the pull goes anonymous, so the
/// registry's refusal names the problem on the task.
fn credentials(assignment: &Assignment, c: &ContainerSpec) -> Credentials {
    Credentials::from_registry_auth_header(&c.registry_auth.0).unwrap_or_else(|e| {
        tracing::warn!(task = %assignment.task_id, "the service's registry credentials: {}", e.chain());
        Credentials::Anonymous
    })
}

fn health_config(h: &HealthSpec) -> HealthConfig {
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    HealthConfig {
        test: h.test.clone(),
        interval: ms(h.interval_ms),
        timeout: ms(h.timeout_ms),
        start_period: ms(h.start_period_ms),
        retries: h.retries,
    }
}

/// Why the task cannot start when its assignment lacks the data of a
/// secret or config its spec uses (removed since the task was made): the
/// task is rejected rather than run without the file.
pub fn missing_files(assignment: &Assignment) -> Option<String> {
    let spec = &assignment.spec;
    let missing = |what: &str, wanted: &[shoal_control::objects::PayloadReference], got: usize| {
        (wanted.len() != got).then(|| {
            let names: Vec<&str> = wanted.iter().map(|r| r.name.as_str()).collect();
            format!(
                "the managers sent {got} of the task's {} {what}s ({}): one was removed; update the service",
                wanted.len(),
                names.join(", ")
            )
        })
    };
    missing("secret", &spec.secrets, assignment.secrets.len())
        .or_else(|| missing("config", &spec.configs, assignment.configs.len()))
}

/// The task's environment: what the service asks for, after the variables
/// naming the task (as Swarm's `{{.Task.ID}}` templates would), which the
/// service's own may override.
pub fn task_env(assignment: &Assignment) -> Vec<String> {
    let mut env = vec![
        format!("SHOAL_TASK_ID={}", assignment.task_id),
        format!("SHOAL_TASK_NAME={}", assignment.name),
        format!("SHOAL_SERVICE_NAME={}", assignment.service_name),
    ];
    env.extend(assignment.spec.env.iter().cloned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::objects::{TaskAttachment, TaskSpec, TaskState};

    fn assignment(container: Option<ContainerSpec>) -> Assignment {
        Assignment {
            task_id: "abcdefghijklmnopqrstuvwxy".into(),
            name: "web.1".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            desired_state: TaskState::Running,
            spec: TaskSpec {
                command: vec!["/entry".into()],
                env: vec!["A=1".into()],
                container,
                ..TaskSpec::default()
            },
            networks: vec![TaskAttachment {
                network: "n".into(),
                ip: "10.0.1.5".parse().unwrap(),
                vip: None,
                aliases: Vec::new(),
            }],
            ports: vec![],
            secrets: vec![],
            configs: vec![],
        }
    }

    #[test]
    fn a_task_missing_a_secrets_data_is_refused() {
        let mut a = assignment(None);
        assert_eq!(missing_files(&a), None);
        a.spec.secrets = vec![shoal_control::objects::PayloadReference::named("pw")];
        let why = missing_files(&a).expect("refused");
        assert!(why.contains("0 of the task's 1 secrets (pw)"), "{why}");
        a.secrets = vec![shoal_control::objects::PayloadFile {
            path: "/run/secrets/pw".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data: shoal_control::objects::PayloadData(b"x".to_vec()),
        }];
        assert_eq!(missing_files(&a), None);
    }

    #[test]
    fn a_process_task_has_no_container_and_a_container_task_gets_its_options() {
        let l = launch(&assignment(None), "/run/netns/x".into(), String::new());
        assert!(l.container.is_none());
        assert_eq!(l.command, ["/entry"]);
        assert_eq!(l.env[3], "A=1");

        let spec = ContainerSpec {
            image: "busybox:1".into(),
            args: vec!["httpd".into()],
            user: "app".into(),
            read_only: true,
            pids_limit: 64,
            hosts: vec!["10.0.0.9 db db.local".into()],
            stop_grace_period_ms: Some(2500),
            healthcheck: Some(HealthSpec {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval_ms: Some(500),
                ..HealthSpec::default()
            }),
            ..ContainerSpec::default()
        };
        let l = launch(
            &assignment(Some(spec)),
            "/run/netns/x".into(),
            String::new(),
        );
        let c = l.container.expect("a container");
        assert_eq!(l.command, ["/entry"], "the entrypoint override");
        assert_eq!(
            (c.image.as_str(), c.args.as_slice()),
            ("busybox:1", &["httpd".to_string()][..])
        );
        assert_eq!(c.hostname, "abcdefghijkl", "Docker's short id");
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.workdir, None, "the image's");
        assert_eq!(c.stop_signal, None, "the image's");
        assert!(c.read_only);
        assert_eq!(c.pids_limit, 64);
        assert_eq!(c.addresses, ["10.0.1.5".parse::<IpAddr>().unwrap()]);
        let db: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            c.extra_hosts,
            [("db".to_string(), db), ("db.local".to_string(), db)]
        );
        let a = assignment(Some(ContainerSpec::default()));
        assert_eq!(
            stop_grace(Some(&a), Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        let mut a = a;
        a.spec.container.as_mut().unwrap().stop_grace_period_ms = Some(2500);
        assert_eq!(
            stop_grace(Some(&a), Duration::from_secs(10)),
            Duration::from_millis(2500)
        );
        assert_eq!(
            stop_grace(None, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        let h = c.healthcheck.expect("a health check");
        assert_eq!(h.interval, Some(Duration::from_millis(500)));
        assert_eq!(h.retries, None);
    }
}
