//! Docker's `Service` and `ServiceSpec` (`GET /services`, `service
//! inspect`), and how shoal's service view becomes one.

use serde::{Deserialize, Serialize, Serializer};

use super::{
    go_duration_nanos, go_time_ms, go_time_secs, is_zero, Labels, NetworkAttachmentConfig,
    ObjectVersion, PortConfig, TaskSpec,
};
use crate::api::ServiceView;
use crate::objects::{self, FailureAction, UpdateOrder, UpdateState};

/// The label `docker stack deploy` puts on a stack's services, networks,
/// secrets and configs (and on the services' containers).
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// A service: its spec, the spec before the last update, its published
/// ports and virtual IPs, and how its update and tasks are doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub version: ObjectVersion,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// Running and desired tasks (`GET /services?status=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
}

/// What the user declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default)]
    pub task_template: TaskSpec,
    #[serde(default)]
    pub mode: ServiceMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// Deprecated by Docker in favour of `TaskTemplate.Networks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
}

/// Exactly one of the four is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceMode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated: Option<ReplicatedService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_job: Option<ReplicatedJob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_job: Option<GlobalJob>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicatedService {
    /// `None` (Docker's CLI sends `{}`) means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalService {}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicatedJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_completions: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalJob {}

/// `--update-*` / `--rollback-*`; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfig {
    #[serde(default)]
    pub parallelism: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay: i64,
    /// `pause`, `continue` or `rollback`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub monitor: i64,
    #[serde(default, serialize_with = "go_float32")]
    pub max_failure_ratio: f32,
    /// `stop-first` or `start-first`.
    #[serde(default)]
    pub order: String,
}

/// How the last update (or rollback) went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    /// `updating`, `paused`, `completed`, `rollback_started`,
    /// `rollback_paused` or `rollback_completed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub running_tasks: u64,
    #[serde(default)]
    pub desired_tasks: u64,
    #[serde(default)]
    pub completed_tasks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobStatus {
    #[serde(default)]
    pub job_iteration: ObjectVersion,
    #[serde(default)]
    pub last_execution: String,
}

/// The service's published ports and virtual IPs, as allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    #[serde(default)]
    pub spec: EndpointSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "VirtualIPs")]
    pub virtual_ips: Vec<EndpointVirtualIp>,
}

/// `--endpoint-mode` and `--publish`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSpec {
    /// `vip` or `dnsrr`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointVirtualIp {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "NetworkID"
    )]
    pub network_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// Go prints a whole float32 without a fraction (`0`, not `0.0`).
fn go_float32<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f32(*value)
    }
}

impl ServiceMode {
    /// `replicated`, `global`, `replicated-job` or `global-job` (the words
    /// of the `mode` filter).
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode {
                global: Some(_), ..
            } => "global",
            ServiceMode {
                replicated_job: Some(_),
                ..
            } => "replicated-job",
            ServiceMode {
                global_job: Some(_),
                ..
            } => "global-job",
            _ => "replicated",
        }
    }
}

impl ServiceSpec {
    /// A shoal spec. Network ids go to `TaskTemplate.Networks`, the
    /// command to the container's `Args`.
    pub fn from_shoal(spec: &objects::ServiceSpec) -> Self {
        let mut task_template = TaskSpec::from_shoal(&spec.task, &spec.networks);
        for attachment in &mut task_template.networks {
            if let Some(aliases) = spec.network_aliases.get(&attachment.target) {
                attachment.aliases = aliases.clone();
            }
        }
        // `stack deploy` labels the containers with the stack too.
        if let (Some(stack), Some(container)) = (
            spec.labels.get(STACK_NAMESPACE),
            task_template.container_spec.as_mut(),
        ) {
            container.labels = Some(Labels::from([(STACK_NAMESPACE.into(), stack.clone())]));
        }
        ServiceSpec {
            name: spec.name.clone(),
            labels: Some(spec.labels.clone()),
            task_template,
            mode: match spec.mode {
                objects::ServiceMode::Replicated { replicas } => ServiceMode {
                    replicated: Some(ReplicatedService {
                        replicas: Some(replicas),
                    }),
                    ..ServiceMode::default()
                },
                objects::ServiceMode::Global => ServiceMode {
                    global: Some(GlobalService {}),
                    ..ServiceMode::default()
                },
            },
            update_config: Some(UpdateConfig::from_shoal(&spec.update)),
            rollback_config: Some(UpdateConfig::from_shoal(&spec.rollback)),
            networks: Vec::new(),
            endpoint_spec: Some(endpoint_spec(spec.endpoint_mode, &spec.ports)),
        }
    }
}

fn endpoint_spec(mode: objects::EndpointMode, ports: &[objects::PortConfig]) -> EndpointSpec {
    EndpointSpec {
        mode: mode.to_string(),
        ports: ports.iter().map(PortConfig::from_shoal).collect(),
    }
}

impl UpdateConfig {
    pub fn from_shoal(config: &objects::UpdateConfig) -> Self {
        UpdateConfig {
            parallelism: config.parallelism,
            delay: go_duration_nanos(config.delay_ms),
            failure_action: match config.failure_action {
                FailureAction::Pause => "pause",
                FailureAction::Continue => "continue",
                FailureAction::Rollback => "rollback",
            }
            .into(),
            monitor: go_duration_nanos(config.monitor_ms),
            max_failure_ratio: config.max_failure_ratio,
            order: match config.order {
                UpdateOrder::StopFirst => "stop-first",
                UpdateOrder::StartFirst => "start-first",
            }
            .into(),
        }
    }
}

impl UpdateStatus {
    pub fn from_shoal(status: &objects::UpdateStatus) -> Self {
        UpdateStatus {
            state: match status.state {
                UpdateState::Updating => "updating",
                UpdateState::Paused => "paused",
                UpdateState::Completed => "completed",
                UpdateState::RollbackStarted => "rollback_started",
                UpdateState::RollbackPaused => "rollback_paused",
                UpdateState::RollbackCompleted => "rollback_completed",
            }
            .into(),
            started_at: Some(go_time_ms(status.started_at_ms)),
            completed_at: status.completed_at_ms.map(go_time_ms),
            message: status.message.clone(),
        }
    }
}

impl From<&ServiceView> for Service {
    fn from(view: &ServiceView) -> Self {
        let spec = ServiceSpec::from_shoal(&view.spec);
        let endpoint = Endpoint {
            spec: endpoint_spec(view.spec.endpoint_mode, &view.spec.ports),
            ports: view.spec.ports.iter().map(PortConfig::from_shoal).collect(),
            virtual_ips: view
                .virtual_ips
                .iter()
                .map(|v| EndpointVirtualIp {
                    network_id: v.network_id.clone(),
                    addr: v.addr.clone(),
                })
                .collect(),
        };
        Service {
            id: view.id.clone(),
            version: ObjectVersion::new(view.version),
            created_at: go_time_secs(view.created_at),
            updated_at: go_time_secs(view.updated_at),
            spec,
            previous_spec: view.previous_spec.as_ref().map(ServiceSpec::from_shoal),
            endpoint,
            update_status: view.update_status.as_ref().map(UpdateStatus::from_shoal),
            service_status: Some(ServiceStatus {
                running_tasks: view.running,
                desired_tasks: view.desired,
                completed_tasks: 0,
            }),
            job_status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VirtualIpView;
    use crate::engine::samples::round_trip;

    /// A replicated service with a published port, after an update, as
    /// `GET /services?status=true` answers.
    const WEB: &str = r#"{"ID":"9mnpnzenvg8p8tdbtq4wvbkcz","Version":{"Index":19},"CreatedAt":"2016-06-07T21:05:51.880065305Z","UpdatedAt":"2016-06-07T21:07:29.962229872Z","Spec":{"Name":"web","Labels":{"com.example":"shop"},"TaskTemplate":{"ContainerSpec":{"Image":"nginx:alpine","Args":["nginx","-g","daemon off;"],"Env":["A=1"]},"Resources":{"Limits":{"MemoryBytes":104857600},"Reservations":{}},"RestartPolicy":{"Condition":"any","Delay":5000000000,"MaxAttempts":0},"Placement":{"Constraints":["node.role==worker"]},"Networks":[{"Target":"4qvuz4ko70xaltuqbt8956gd1"}],"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":3}},"UpdateConfig":{"Parallelism":2,"Delay":10000000000,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0.1,"Order":"start-first"},"RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}},"PreviousSpec":{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"nginx:1.24"},"ForceUpdate":0},"Mode":{"Replicated":{}},"EndpointSpec":{"Mode":"vip"}},"Endpoint":{"Spec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]},"Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}],"VirtualIPs":[{"NetworkID":"4vywk8n6v4vq2zsnmfxc5vb6d","Addr":"10.255.0.5/16"},{"NetworkID":"4qvuz4ko70xaltuqbt8956gd1","Addr":"10.0.1.2/24"}]},"UpdateStatus":{"State":"updating","StartedAt":"2016-06-07T21:07:29.962229872Z","Message":"update in progress"},"ServiceStatus":{"RunningTasks":2,"DesiredTasks":3,"CompletedTasks":0}}"#;

    /// A global job (Docker's other modes) with a job status.
    const JOB: &str = r#"{"ID":"q8z2xtk9cnlp04ni9z1ktvbpa","Version":{"Index":40},"CreatedAt":"2021-03-01T10:00:00Z","UpdatedAt":"2021-03-01T10:00:00Z","Spec":{"Name":"migrate","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox"},"ForceUpdate":0},"Mode":{"GlobalJob":{}}},"Endpoint":{"Spec":{}},"UpdateStatus":{"State":"completed","StartedAt":"2021-03-01T10:00:00Z","CompletedAt":"2021-03-01T10:00:05.25Z"},"JobStatus":{"JobIteration":{"Index":39},"LastExecution":"2021-03-01T10:00:00Z"}}"#;

    #[test]
    fn docker_services_round_trip() {
        let web: Service = round_trip(WEB);
        assert_eq!(web.spec.mode.replicated.unwrap().replicas, Some(3));
        assert_eq!(web.spec.update_config.unwrap().max_failure_ratio, 0.1);
        assert_eq!(web.endpoint.virtual_ips.len(), 2);
        let job: Service = round_trip(JOB);
        assert_eq!(job.spec.mode.name(), "global-job");
        let replicated: ServiceMode = serde_json::from_str(r#"{"Replicated":{}}"#).unwrap();
        assert_eq!(replicated.name(), "replicated");
        assert_eq!(replicated.replicated.unwrap().replicas, None);
    }

    #[test]
    fn shoal_services_become_docker_services() {
        let spec: objects::ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "web",
            "labels": {"team": "shop"},
            "mode": {"replicated": {"replicas": 3}},
            "task": {"command": ["httpd", "-f"]},
            "networks": ["net1"],
            "ports": [{"protocol": "tcp", "target": 80, "published": 8080}],
            "update": {"parallelism": 2, "delay_ms": 10000, "failure_action": "rollback",
                       "order": "start-first", "monitor_ms": 5000, "max_failure_ratio": 0.25}
        }))
        .unwrap();
        let mut previous = spec.clone();
        previous.mode = objects::ServiceMode::Global;
        let view = ServiceView {
            id: "svc1".into(),
            name: "web".into(),
            mode: "replicated".into(),
            running: 2,
            desired: 3,
            version: 7,
            spec,
            networks: vec!["app".into()],
            previous_spec: Some(previous),
            update_status: Some(objects::UpdateStatus {
                state: UpdateState::RollbackCompleted,
                started_at_ms: 1_471_517_064_000,
                completed_at_ms: Some(1_471_517_070_250),
                message: "rollback completed".into(),
            }),
            created_at: 1_471_517_000,
            updated_at: 1_471_517_064,
            virtual_ips: vec![VirtualIpView {
                network_id: "net1".into(),
                addr: "10.0.1.254".into(),
            }],
        };
        let service = Service::from(&view);
        let json = serde_json::to_value(&service).unwrap();
        let port = serde_json::json!({"Protocol": "tcp", "TargetPort": 80,
            "PublishedPort": 8080, "PublishMode": "ingress"});
        assert_eq!(json["ID"], "svc1");
        assert_eq!(json["Version"], serde_json::json!({"Index": 7}));
        assert_eq!(json["CreatedAt"], "2016-08-18T10:43:20Z");
        assert_eq!(
            json["Spec"]["Mode"],
            serde_json::json!({"Replicated": {"Replicas": 3}})
        );
        assert_eq!(json["Spec"]["Labels"]["team"], "shop");
        assert_eq!(
            json["Spec"]["TaskTemplate"]["ContainerSpec"],
            serde_json::json!({"Args": ["httpd", "-f"]})
        );
        assert_eq!(
            json["Spec"]["TaskTemplate"]["Networks"],
            serde_json::json!([{"Target": "net1"}])
        );
        assert_eq!(
            json["Spec"]["UpdateConfig"],
            serde_json::json!({"Parallelism": 2, "Delay": 10_000_000_000i64,
                "FailureAction": "rollback", "Monitor": 5_000_000_000i64,
                "MaxFailureRatio": 0.25, "Order": "start-first"})
        );
        assert_eq!(
            json["Spec"]["RollbackConfig"],
            serde_json::json!({"Parallelism": 1, "FailureAction": "pause",
                "Monitor": 5_000_000_000i64, "MaxFailureRatio": 0, "Order": "stop-first"})
        );
        assert_eq!(
            json["Spec"]["EndpointSpec"],
            serde_json::json!({"Mode": "vip", "Ports": [port]})
        );
        assert_eq!(
            json["PreviousSpec"]["Mode"],
            serde_json::json!({"Global": {}})
        );
        assert_eq!(json["Endpoint"]["Ports"], serde_json::json!([port]));
        assert_eq!(
            json["Endpoint"]["VirtualIPs"],
            serde_json::json!([{"NetworkID": "net1", "Addr": "10.0.1.254"}])
        );
        assert_eq!(
            json["UpdateStatus"],
            serde_json::json!({"State": "rollback_completed",
                "StartedAt": "2016-08-18T10:44:24Z", "CompletedAt": "2016-08-18T10:44:30.25Z",
                "Message": "rollback completed"})
        );
        assert_eq!(
            json["ServiceStatus"],
            serde_json::json!({"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0})
        );
        assert_eq!(service.spec.mode.name(), "replicated");
    }
}
