//! How services and tasks are shown: `service ls|inspect|ps` and `node ps`,
//! with Docker's column names and PascalCase JSON fields, so `--format`
//! templates read like Docker's (`{{.Name}}`, `{{.CurrentState}}`).

use serde::{Deserialize, Serialize};

use crate::objects::{
    PortConfig, Service, ServiceMode, ServiceSpec, Task, TaskState, UpdateStatus,
};

/// `service ls` and `service inspect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceView {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// `replicated` or `global`.
    pub mode: String,
    /// Tasks running now.
    pub running: u64,
    /// Tasks wanted: the replicas, or the eligible nodes of a global service.
    pub desired: u64,
    /// The spec's version (Docker's `Version.Index`); `service update`
    /// sends it back so a concurrent change is refused, not overwritten.
    pub version: u64,
    pub spec: ServiceSpec,
    /// Network names, in the spec's order.
    pub networks: Vec<String>,
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The service's virtual IPs (Docker's `Endpoint.VirtualIPs`), with the
    /// network's prefix length: `10.0.0.254/24`.
    #[serde(default, rename = "VirtualIPs")]
    pub virtual_ips: Vec<VirtualIpView>,
}

/// One virtual IP, as `service inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VirtualIpView {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub addr: String,
}

/// A spec as users see it: registry credentials never leave the managers
/// in a view.
fn shown(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    if let Some(container) = spec.task.container.as_mut() {
        *container = container.shown();
    }
    spec
}

impl ServiceView {
    pub fn new(service: &Service, tasks: &[&Task], desired: u64, networks: Vec<String>) -> Self {
        let running = tasks
            .iter()
            .filter(|t| t.wanted() && t.status.state == TaskState::Running)
            .count() as u64;
        ServiceView {
            id: service.id.clone(),
            name: service.spec.name.clone(),
            mode: match service.spec.mode {
                ServiceMode::Replicated { .. } => "replicated".into(),
                ServiceMode::Global => "global".into(),
            },
            running,
            desired,
            version: service.spec_version,
            spec: shown(&service.spec),
            networks,
            previous_spec: service.previous_spec.as_ref().map(shown),
            update_status: service.update_status.clone(),
            created_at: service.created_at,
            updated_at: service.updated_at,
            virtual_ips: service
                .virtual_ips
                .iter()
                .map(|v| VirtualIpView {
                    network_id: v.network.clone(),
                    addr: v.addr.to_string(),
                })
                .collect(),
        }
    }

    /// Docker's REPLICAS column: `2/3`.
    pub fn replicas(&self) -> String {
        format!("{}/{}", self.running, self.desired)
    }
}

/// Docker's PORTS column: `*:8080->80/tcp`, comma separated.
pub fn ports_column(ports: &[PortConfig]) -> String {
    ports
        .iter()
        .map(|p| format!("*:{}->{}/{}", p.published, p.target, p.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of `service ps` / `node ps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskView {
    #[serde(rename = "ID")]
    pub id: String,
    /// `web.2`.
    pub name: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub slot: u64,
    #[serde(rename = "NodeID")]
    pub node_id: Option<String>,
    /// The node's hostname, when it is known.
    pub node: String,
    pub desired_state: TaskState,
    pub current_state: TaskState,
    /// Unix milliseconds of the last state change.
    pub since_ms: u64,
    pub message: String,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    /// The task's process id on its node, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// `NETWORK=IP` per attachment (network names).
    pub addresses: Vec<String>,
    pub spec_version: u64,
    pub command: Vec<String>,
    pub created_at_ms: u64,
    /// Whether the task runs its service's current spec (Docker's
    /// `_up-to-date`; a scale changes the service's version, not this).
    #[serde(default)]
    pub up_to_date: bool,
    /// A container task's image (as its spec names it, digest included);
    /// empty for a host command.
    #[serde(default)]
    pub image: String,
    /// The ports published in host mode on the task's node (Docker's
    /// `Status.PortStatus`): `service ps` shows them in PORTS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<PortConfig>,
}

impl TaskView {
    /// `hostname` and `network_name` resolve ids for display.
    pub fn new(
        task: &Task,
        hostname: impl Fn(&str) -> Option<String>,
        network_name: impl Fn(&str) -> String,
    ) -> Self {
        TaskView {
            id: task.id.clone(),
            name: task.name(),
            service_id: task.service_id.clone(),
            slot: task.slot,
            node_id: task.node_id.clone(),
            node: task
                .node_id
                .as_deref()
                .map(|id| hostname(id).unwrap_or_else(|| id.to_string()))
                .unwrap_or_default(),
            desired_state: task.desired_state,
            current_state: task.status.state,
            since_ms: task.status.timestamp_ms,
            message: task.status.message.clone(),
            error: task.status.err.clone(),
            exit_code: task.status.exit_code,
            pid: task.status.pid,
            addresses: task
                .networks
                .iter()
                .map(|a| format!("{}={}", network_name(&a.network), a.ip))
                .collect(),
            spec_version: task.spec_version,
            command: task.spec.command.clone(),
            created_at_ms: task.created_at_ms,
            up_to_date: false,
            image: task
                .spec
                .container
                .as_ref()
                .map(|c| c.image.clone())
                .unwrap_or_default(),
            host_ports: task.host_ports.clone(),
        }
    }
}
