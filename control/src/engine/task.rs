//! Docker's `TaskSpec` (a service's `TaskTemplate`) and `Task` (`GET
//! /tasks`), and how shoal's task specs and tasks become them.

use serde::{Deserialize, Serialize};

use super::network::NetworkAttachment;
use super::{go_duration_nanos, go_time_ms, is_zero, ContainerSpec, Driver, Labels, ObjectVersion};
use crate::api::TaskView;
use crate::objects::{self, RestartCondition};

/// `TaskTemplate`: what every task of a service runs, and where.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_spec: Option<ContainerSpec>,
    /// Plugin services (Docker's experimental runtime); kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_spec: Option<serde_json::Value>,
    /// `{"ContainerID": ...}` for attachments of plain containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_attachment_spec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Driver>,
    /// Bumped by `service update --force`.
    #[serde(default)]
    pub force_update: u64,
    /// `container`, `plugin` or `attachment`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceRequirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resources>,
}

/// What a task may use at most (`--limit-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Limit {
    #[serde(default, skip_serializing_if = "is_zero", rename = "NanoCPUs")]
    pub nano_cpus: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pids: i64,
}

/// What a task reserves (`--reserve-*`), or what a node offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "is_zero", rename = "NanoCPUs")]
    pub nano_cpus: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

/// A user-defined resource: `gpu=UUID-1` (named) or `ssd=3` (discrete).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_resource_spec: Option<NamedGenericResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteGenericResource>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamedGenericResource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiscreteGenericResource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: i64,
}

/// When a stopped task is replaced; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

/// Where tasks may go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    /// `node.role==worker`, `node.labels.zone!=a`...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_replicas: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// shoal's own: `spread` or `binpack` when the service sets one. Not in
    /// Docker's API; Docker's clients ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlacementPreference {
    #[serde(default)]
    pub spread: Option<SpreadOver>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpreadOver {
    /// `node.labels.zone`.
    #[serde(default)]
    pub spread_descriptor: String,
}

/// An architecture and OS (`x86_64`, `linux`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "OS")]
    pub os: String,
}

/// A network a task joins: its id (or, from `stack deploy`, its name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachmentConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<Labels>,
}

/// One task: a slot of a service (or a node, for global services) at one
/// version of its spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub version: ObjectVersion,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default)]
    pub spec: TaskSpec,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "ServiceID"
    )]
    pub service_id: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slot: u64,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "NodeID")]
    pub node_id: String,
    #[serde(default)]
    pub status: TaskStatus,
    /// `running`, `shutdown`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desired_state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<NetworkAttachment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_iteration: Option<ObjectVersion>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    #[serde(default)]
    pub port_status: PortStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStatus {
    #[serde(default, rename = "ContainerID")]
    pub container_id: String,
    #[serde(default, rename = "PID")]
    pub pid: i64,
    #[serde(default)]
    pub exit_code: i64,
}

/// The host ports of a task (`--publish mode=host`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<super::PortConfig>,
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl TaskSpec {
    /// A shoal task spec, on `networks` (ids, in the service's order). The
    /// command is the container's `Args`, as `service create IMAGE ARGS...`
    /// sets them.
    pub fn from_shoal(spec: &objects::TaskSpec, networks: &[String]) -> Self {
        let r = &spec.resources;
        let pids = spec.container.as_ref().map_or(0, |c| signed(c.pids_limit));
        let placement = &spec.placement;
        TaskSpec {
            container_spec: Some(ContainerSpec::from_shoal(spec)),
            resources: Some(ResourceRequirements {
                limits: Some(Limit {
                    nano_cpus: signed(r.limit_nano_cpus),
                    memory_bytes: signed(r.limit_memory),
                    pids,
                }),
                reservations: Some(Resources {
                    nano_cpus: signed(r.reserve_nano_cpus),
                    memory_bytes: signed(r.reserve_memory),
                    generic_resources: Vec::new(),
                }),
            }),
            restart_policy: Some(RestartPolicy {
                condition: match spec.restart.condition {
                    RestartCondition::None => "none",
                    RestartCondition::OnFailure => "on-failure",
                    RestartCondition::Any => "any",
                }
                .into(),
                delay: Some(go_duration_nanos(spec.restart.delay_ms)),
                max_attempts: Some(spec.restart.max_attempts.unwrap_or(0)),
                window: None,
            }),
            placement: Some(Placement {
                constraints: placement
                    .constraints
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                preferences: placement
                    .preferences
                    .iter()
                    .map(|p| PlacementPreference {
                        spread: Some(SpreadOver {
                            spread_descriptor: p.strip_prefix("spread=").unwrap_or(p).to_string(),
                        }),
                    })
                    .collect(),
                strategy: placement.strategy.map(|s| s.to_string()),
                ..Placement::default()
            }),
            networks: networks
                .iter()
                .map(|id| NetworkAttachmentConfig {
                    target: id.clone(),
                    ..NetworkAttachmentConfig::default()
                })
                .collect(),
            force_update: spec.force_update,
            ..TaskSpec::default()
        }
    }
}

impl Task {
    /// A shoal task; `attachment` turns each of its network attachments
    /// into Docker's (the network and the address with its prefix).
    pub fn from_shoal(
        task: &objects::Task,
        attachment: impl Fn(&objects::TaskAttachment) -> NetworkAttachment,
    ) -> Self {
        let networks: Vec<String> = task.networks.iter().map(|a| a.network.clone()).collect();
        Task {
            id: task.id.clone(),
            version: ObjectVersion::default(),
            created_at: go_time_ms(task.created_at_ms),
            updated_at: go_time_ms(task.status.timestamp_ms.max(task.created_at_ms)),
            name: String::new(),
            labels: Some(Labels::new()),
            spec: {
                let mut spec = TaskSpec::from_shoal(&task.spec, &networks);
                for (config, attachment) in spec.networks.iter_mut().zip(&task.networks) {
                    config.aliases = attachment.aliases.clone();
                }
                spec
            },
            service_id: task.service_id.clone(),
            slot: task.slot,
            node_id: task.node_id.clone().unwrap_or_default(),
            status: TaskStatus {
                timestamp: go_time_ms(task.status.timestamp_ms),
                state: task.status.state.as_str().into(),
                message: task.status.message.clone(),
                err: task.status.err.clone().unwrap_or_default(),
                container_status: container_status(task.status.pid, task.status.exit_code),
                port_status: PortStatus {
                    ports: task
                        .host_ports
                        .iter()
                        .map(super::PortConfig::from_shoal)
                        .collect(),
                },
            },
            desired_state: task.desired_state.as_str().into(),
            networks_attachments: task.networks.iter().map(attachment).collect(),
            generic_resources: Vec::new(),
            job_iteration: None,
        }
    }
}

fn container_status(pid: Option<u32>, exit_code: Option<i32>) -> Option<ContainerStatus> {
    (pid.is_some() || exit_code.is_some()).then(|| ContainerStatus {
        container_id: String::new(),
        pid: pid.map_or(0, i64::from),
        exit_code: exit_code.map_or(0, i64::from),
    })
}

impl From<&TaskView> for Task {
    /// The task as `service ps` sees it: everything but its full spec and
    /// its networks (the view carries the command and network names only).
    fn from(view: &TaskView) -> Self {
        Task {
            id: view.id.clone(),
            version: ObjectVersion::default(),
            created_at: go_time_ms(view.created_at_ms),
            updated_at: go_time_ms(view.since_ms.max(view.created_at_ms)),
            name: String::new(),
            labels: Some(Labels::new()),
            spec: TaskSpec {
                // A container's command is Docker's `Command`; a host
                // command shows as `Args`.
                container_spec: Some(if view.image.is_empty() {
                    ContainerSpec {
                        args: view.command.clone(),
                        ..ContainerSpec::default()
                    }
                } else {
                    ContainerSpec {
                        image: view.image.clone(),
                        command: view.command.clone(),
                        ..ContainerSpec::default()
                    }
                }),
                ..TaskSpec::default()
            },
            service_id: view.service_id.clone(),
            slot: view.slot,
            node_id: view.node_id.clone().unwrap_or_default(),
            status: TaskStatus {
                timestamp: go_time_ms(view.since_ms),
                state: view.current_state.as_str().into(),
                message: view.message.clone(),
                err: view.error.clone().unwrap_or_default(),
                container_status: container_status(view.pid, view.exit_code),
                port_status: PortStatus::default(),
            },
            desired_state: view.desired_state.as_str().into(),
            ..Task::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::round_trip;
    use crate::objects::{TaskAttachment, TaskState};

    /// A running task of a replicated service, as `GET /tasks` answers.
    const TASK: &str = r#"{"ID":"0kzzo1i0y4jz6027t0k7aezc7","Version":{"Index":71},"CreatedAt":"2016-06-07T21:07:31.171892745Z","UpdatedAt":"2016-06-07T21:07:31.376370513Z","Labels":{},"Spec":{"ContainerSpec":{"Image":"redis"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","MaxAttempts":0},"Placement":{},"ForceUpdate":0},"ServiceID":"9mnpnzenvg8p8tdbtq4wvbkcz","Slot":1,"NodeID":"60gvrl6tm78dmak4yl7srz94v","Status":{"Timestamp":"2016-06-07T21:07:31.290032978Z","State":"running","Message":"started","ContainerStatus":{"ContainerID":"e5d62702a1b48d01c3e02ca1e0212a250801fa8d67caca0b6f35919ebc12f035","PID":677,"ExitCode":0},"PortStatus":{}},"DesiredState":"running","NetworksAttachments":[{"Network":{"ID":"4qvuz4ko70xaltuqbt8956gd1","Version":{"Index":18},"CreatedAt":"2016-06-07T20:31:11.912919752Z","UpdatedAt":"2016-06-07T21:07:29.955277358Z","Spec":{"Name":"ingress","Labels":{"com.docker.swarm.internal":"true"},"DriverConfiguration":{},"IPAMOptions":{"Driver":{},"Configs":[{"Subnet":"10.255.0.0/16","Gateway":"10.255.0.1"}]}},"DriverState":{"Name":"overlay","Options":{"com.docker.network.driver.overlay.vxlanid_list":"256"}},"IPAMOptions":{"Driver":{"Name":"default"},"Configs":[{"Subnet":"10.255.0.0/16","Gateway":"10.255.0.1"}]}},"Addresses":["10.255.0.10/16"]}]}"#;

    /// A failed task of a global service, with a job iteration and generic
    /// resources.
    const FAILED: &str = r#"{"ID":"1yljwbmlr8er2waf8orvqpwms","Version":{"Index":30},"CreatedAt":"2016-06-07T21:07:30.019104782Z","UpdatedAt":"2016-06-07T21:07:30.231958098Z","Name":"hopeful_cori","Labels":{},"Spec":{"ContainerSpec":{"Image":"redis","Args":["redis-server","--appendonly","yes"]},"Resources":{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":100},"Reservations":{"GenericResources":[{"DiscreteResourceSpec":{"Kind":"SSD","Value":3}},{"NamedResourceSpec":{"Kind":"GPU","Value":"UUID1"}}]}},"RestartPolicy":{"Condition":"on-failure","Delay":5000000000,"MaxAttempts":3,"Window":60000000000},"Placement":{"Constraints":["node.role==worker"],"Preferences":[{"Spread":{"SpreadDescriptor":"node.labels.zone"}}],"MaxReplicas":2,"Platforms":[{"Architecture":"x86_64","OS":"linux"}]},"Networks":[{"Target":"app","Aliases":["web"],"DriverOpts":{"x":"y"}}],"LogDriver":{"Name":"json-file","Options":{"max-size":"10m"}},"ForceUpdate":2,"Runtime":"container"},"ServiceID":"9mnpnzenvg8p8tdbtq4wvbkcz","NodeID":"60gvrl6tm78dmak4yl7srz94v","Status":{"Timestamp":"2016-06-07T21:07:30.202183143Z","State":"failed","Message":"started","Err":"task: non-zero exit (1)","ContainerStatus":{"ContainerID":"1cf8d63d18e79668b0004a4be4c6ee58cddfad2dae29506d8781581d0688a213","PID":0,"ExitCode":1},"PortStatus":{"Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"host"}]}},"DesiredState":"shutdown","GenericResources":[{"DiscreteResourceSpec":{"Kind":"SSD","Value":1}}],"JobIteration":{"Index":4}}"#;

    #[test]
    fn docker_tasks_round_trip() {
        let task: Task = round_trip(TASK);
        assert_eq!(task.networks_attachments[0].addresses, ["10.255.0.10/16"]);
        let failed: Task = round_trip(FAILED);
        assert_eq!(failed.status.err, "task: non-zero exit (1)");
        assert_eq!(failed.spec.placement.unwrap().max_replicas, 2);
    }

    fn shoal_task() -> objects::Task {
        let spec: objects::TaskSpec = serde_json::from_value(serde_json::json!({
            "command": ["sleep", "100"],
            "env": ["A=1"],
            "resources": {"reserve_memory": 67108864u64, "limit_nano_cpus": 1500000000u64},
            "restart": {"condition": "on-failure", "delay_ms": 500, "max_attempts": 3},
            "placement": {
                "constraints": [{"key": "node.role", "equal": true, "value": "worker"}],
                "preferences": ["spread=node.labels.zone"],
                "strategy": "binpack"
            },
            "force_update": 1
        }))
        .unwrap();
        objects::Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            node_id: Some("n1".into()),
            spec,
            spec_version: 3,
            networks: vec![TaskAttachment {
                network: "net1".into(),
                ip: "10.0.1.3".parse().unwrap(),
                vip: None,
                aliases: Vec::new(),
            }],
            desired_state: TaskState::Running,
            status: objects::TaskStatus {
                state: TaskState::Running,
                timestamp_ms: 1_471_517_065_500,
                message: "started".into(),
                err: None,
                exit_code: None,
                pid: Some(42),
            },
            not_before_ms: 0,
            attempt: 0,
            created_at_ms: 1_471_517_064_000,
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn shoal_tasks_become_docker_tasks() {
        let network: objects::Network = serde_json::from_value(serde_json::json!({
            "id": "net1", "name": "app", "driver": "overlay", "created_at": 0,
            "spec": {"id": "net1", "vni": 4097, "subnet": "10.0.1.0/24", "gateway": "10.0.1.1"}
        }))
        .unwrap();
        let task = Task::from_shoal(&shoal_task(), |a| {
            NetworkAttachment::from_shoal(&network, a.ip)
        });
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ID": "t1", "Version": {},
                "CreatedAt": "2016-08-18T10:44:24Z", "UpdatedAt": "2016-08-18T10:44:25.5Z",
                "Labels": {},
                "Spec": {
                    "ContainerSpec": {"Args": ["sleep", "100"], "Env": ["A=1"]},
                    "Resources": {
                        "Limits": {"NanoCPUs": 1500000000i64},
                        "Reservations": {"MemoryBytes": 67108864i64}
                    },
                    "RestartPolicy": {"Condition": "on-failure", "Delay": 500000000i64, "MaxAttempts": 3},
                    "Placement": {
                        "Constraints": ["node.role==worker"],
                        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
                        "Strategy": "binpack"
                    },
                    "Networks": [{"Target": "net1"}],
                    "ForceUpdate": 1
                },
                "ServiceID": "s1", "Slot": 2, "NodeID": "n1",
                "Status": {
                    "Timestamp": "2016-08-18T10:44:25.5Z", "State": "running", "Message": "started",
                    "ContainerStatus": {"ContainerID": "", "PID": 42, "ExitCode": 0},
                    "PortStatus": {}
                },
                "DesiredState": "running",
                "NetworksAttachments": [{
                    "Network": serde_json::to_value(super::super::SwarmNetwork::from_shoal(&network)).unwrap(),
                    "Addresses": ["10.0.1.3/24"]
                }]
            })
        );
    }

    #[test]
    fn task_views_keep_what_service_ps_shows() {
        let view = TaskView::new(&shoal_task(), |_| Some("h2".into()), |n| n.to_string());
        let task = Task::from(&view);
        assert_eq!(task.desired_state, "running");
        assert_eq!(task.status.state, "running");
        assert_eq!(task.node_id, "n1");
        assert_eq!(task.slot, 2);
        assert_eq!(
            task.spec.container_spec.unwrap().args,
            ["sleep".to_string(), "100".into()]
        );
        // A container task shows its image (`service ps` IMAGE) and its
        // entrypoint override as Docker's `Command`.
        let mut container = shoal_task();
        container.spec.container = Some(objects::ContainerSpec {
            image: "r:5000/web:1@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31".into(),
            ..objects::ContainerSpec::default()
        });
        let view = TaskView::new(&container, |_| None, |n| n.to_string());
        let spec = Task::from(&view).spec.container_spec.unwrap();
        assert!(
            spec.image.starts_with("r:5000/web:1@sha256:"),
            "{}",
            spec.image
        );
        assert_eq!(spec.command, ["sleep".to_string(), "100".into()]);
        assert!(spec.args.is_empty());
    }
}
