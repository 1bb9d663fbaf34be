//! `service create|ls|inspect|update|scale|rollback|rm|ps` and `node ps` on
//! a manager. Writes only change the service object; the leader's loop
//! makes the tasks follow. Names, networks and published ports are checked
//! by `shoal_control::orchestrator::admit`, and creates are serialised by a
//! guard object (like network creates), so two racing creates never take
//! the same name or port.

use std::collections::HashMap;

use shoal_control::api::{ApiResponse, ServiceView, TaskView};
use shoal_control::objects::{
    new_node_id, Network, Node, Service, ServiceMode, ServiceSpec, Strategy, Task, TaskState,
    UpdateState, UpdateStatus,
};
use shoal_control::orchestrator::{
    admit, assign_vips, desired_tasks, rolled_back, AddressBook, AddressQuarantine, AdmissionError,
    QUARANTINE_KIND,
};
use shoal_control::store::{kind, Command, Response};
use tonic::Status;

use super::orchestrate::{list, now_ms};
use super::{now_secs, ManagerCtx};

/// Store kind and id of the guard every service create and update writes.
const GUARD_KIND: &str = "service_allocation";
const GUARD_ID: &str = "guard";
const ATTEMPTS: usize = 5;

fn admission_status(e: AdmissionError) -> Status {
    match e {
        AdmissionError::NameTaken(_) | AdmissionError::PortTaken { .. } => {
            Status::already_exists(e.to_string())
        }
        AdmissionError::Network(_) => Status::not_found(e.to_string()),
        AdmissionError::NoFreePort(_) => Status::resource_exhausted(e.to_string()),
        AdmissionError::Spec(_) => Status::invalid_argument(e.to_string()),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl ManagerCtx {
    fn services(&self) -> Vec<Service> {
        let mut services: Vec<Service> = list(&self.objects(), kind::SERVICE);
        services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        services
    }

    /// Docker's lookup: exact id, exact name, unique id prefix.
    pub(super) fn find_service(&self, name: &str) -> Result<(Service, u64), Status> {
        let services = self.services();
        let found = services
            .iter()
            .find(|s| s.id == name)
            .or_else(|| services.iter().find(|s| s.spec.name == name))
            .cloned();
        let service = match found {
            Some(s) => s,
            None => {
                let matches: Vec<&Service> = services
                    .iter()
                    .filter(|s| !name.is_empty() && s.id.starts_with(name))
                    .collect();
                match matches.as_slice() {
                    [one] => (*one).clone(),
                    [] => return Err(Status::not_found(format!("service {name} not found"))),
                    _ => {
                        return Err(Status::invalid_argument(format!(
                            "service {name} is ambiguous ({} matches)",
                            matches.len()
                        )))
                    }
                }
            }
        };
        let version = self
            .objects()
            .get(kind::SERVICE, &service.id)
            .map_or(0, |v| v.version);
        Ok((service, version))
    }

    /// Views of `services`, reading tasks, nodes and networks once.
    fn views(&self, services: &[Service]) -> Vec<ServiceView> {
        let objects = self.objects();
        let tasks: Vec<Task> = list(&objects, kind::TASK);
        let nodes: Vec<Node> = list(&objects, kind::NODE);
        let networks: HashMap<String, String> = list::<Network>(&objects, kind::NETWORK)
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        services
            .iter()
            .map(|service| {
                let names = service
                    .spec
                    .networks
                    .iter()
                    .map(|id| networks.get(id).cloned().unwrap_or_else(|| id.clone()))
                    .collect();
                let mine: Vec<&Task> = tasks
                    .iter()
                    .filter(|t| t.service_id == service.id)
                    .collect();
                ServiceView::new(service, &mine, desired_tasks(service, &nodes), names)
            })
            .collect()
    }

    pub fn list_services(&self) -> Result<ApiResponse, Status> {
        Ok(ApiResponse::Services {
            services: self.views(&self.services()),
        })
    }

    pub fn inspect_service(&self, name: &str) -> Result<ApiResponse, Status> {
        let (service, _) = self.find_service(name)?;
        let view = self.views(std::slice::from_ref(&service)).remove(0);
        Ok(ApiResponse::Service {
            service: Box::new(view),
        })
    }

    /// `service ps` (`service`) or `node ps` (`node`): newest first per slot.
    pub fn list_tasks(&self, filter: impl Fn(&Task) -> bool) -> Result<ApiResponse, Status> {
        let objects = self.objects();
        let nodes: HashMap<String, String> = list::<Node>(&objects, kind::NODE)
            .into_iter()
            .map(|n| (n.id, n.hostname))
            .collect();
        let networks: HashMap<String, String> = list::<Network>(&objects, kind::NETWORK)
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        let mut tasks: Vec<Task> = list::<Task>(&objects, kind::TASK)
            .into_iter()
            .filter(|t| filter(t))
            .collect();
        tasks.sort_by(|a, b| {
            (a.service_name.as_str(), a.slot, a.node_id.as_deref())
                .cmp(&(b.service_name.as_str(), b.slot, b.node_id.as_deref()))
                .then(b.created_at_ms.cmp(&a.created_at_ms))
        });
        Ok(ApiResponse::Tasks {
            tasks: tasks
                .iter()
                .map(|t| {
                    TaskView::new(
                        t,
                        |id| nodes.get(id).cloned(),
                        |id| networks.get(id).cloned().unwrap_or_else(|| id.to_string()),
                    )
                })
                .collect(),
        })
    }

    pub fn service_ps(&self, name: &str) -> Result<ApiResponse, Status> {
        let (service, _) = self.find_service(name)?;
        self.list_tasks(|t| t.service_id == service.id)
    }

    pub fn node_ps(&self, node: &str) -> Result<ApiResponse, Status> {
        let node = self.find_node(node)?;
        self.list_tasks(|t| t.node_id.as_deref() == Some(node.id.as_str()))
    }

    /// Commits `service` with the guard (so admission decisions made on the
    /// same read never both land) and `expect` for the service itself.
    async fn commit_service(
        &self,
        service: &Service,
        guard_version: u64,
        expect: u64,
    ) -> Result<bool, Status> {
        let command = Command::Batch(vec![
            Command::set(GUARD_KIND, GUARD_ID, &service.id, Some(guard_version))
                .map_err(internal)?,
            Command::set(kind::SERVICE, &service.id, service, Some(expect)).map_err(internal)?,
        ]);
        Ok(!matches!(
            self.submit(command).await?,
            Response::Conflict { .. }
        ))
    }

    fn guard_version(&self) -> u64 {
        self.objects()
            .get(GUARD_KIND, GUARD_ID)
            .map_or(0, |v| v.version)
    }

    /// Gives `service` a virtual IP on each of its networks, next to every
    /// address tasks and other services hold.
    fn assign_vips(&self, service: &mut Service, networks: &[Network]) -> Result<(), Status> {
        let objects = self.objects();
        let tasks: Vec<Task> = list(&objects, kind::TASK);
        let quarantines: Vec<AddressQuarantine> = list(&objects, QUARANTINE_KIND);
        let mut book = AddressBook::new(&tasks, &quarantines, now_ms());
        book.reserve_vips(self.services().iter().filter(|s| s.id != service.id));
        assign_vips(service, networks, &mut book)
            .map_err(|e| Status::resource_exhausted(e.to_string()))
    }

    pub async fn create_service(&self, spec: ServiceSpec) -> Result<ApiResponse, Status> {
        for _ in 0..ATTEMPTS {
            let guard = self.guard_version();
            let networks: Vec<Network> = list(&self.objects(), kind::NETWORK);
            let spec =
                admit(spec.clone(), &self.services(), &networks, None).map_err(admission_status)?;
            let now = now_secs();
            let mut service = Service {
                id: new_node_id(rand::random()),
                spec,
                previous_spec: None,
                spec_version: 1,
                update_status: None,
                created_at: now,
                updated_at: now,
                virtual_ips: Vec::new(),
            };
            self.assign_vips(&mut service, &networks)?;
            if self.commit_service(&service, guard, 0).await? {
                tracing::info!("service {} ({}) created", service.spec.name, service.id);
                return self.inspect_service(&service.id);
            }
        }
        Err(Status::aborted(
            "other services were being changed at the same time; retry the command",
        ))
    }

    /// `service update`: `version` is the spec version the client read.
    pub async fn update_service(
        &self,
        name: &str,
        spec: ServiceSpec,
        version: Option<u64>,
        force: bool,
    ) -> Result<ApiResponse, Status> {
        let guard = self.guard_version();
        let (current, stored) = self.find_service(name)?;
        if let Some(v) = version.filter(|v| *v != current.spec_version) {
            return Err(Status::aborted(format!(
                "service {} changed since it was read (version {v}, now {}); retry the command",
                current.spec.name, current.spec_version
            )));
        }
        let networks: Vec<Network> = list(&self.objects(), kind::NETWORK);
        let mut spec = admit(spec, &self.services(), &networks, Some(&current.id))
            .map_err(admission_status)?;
        if force {
            spec.task.force_update = current.spec.task.force_update + 1;
        }
        if std::mem::discriminant(&spec.mode) != std::mem::discriminant(&current.spec.mode) {
            return Err(Status::invalid_argument(
                "a service's mode (replicated or global) cannot change; remove and create it again",
            ));
        }
        let replaces_tasks =
            spec.task != current.spec.task || spec.networks != current.spec.networks;
        let mut updated = current.clone();
        updated.previous_spec = Some(std::mem::replace(&mut updated.spec, spec));
        self.assign_vips(&mut updated, &networks)?;
        updated.spec_version += 1;
        updated.updated_at = now_secs();
        if replaces_tasks {
            updated.update_status = Some(UpdateStatus {
                state: UpdateState::Updating,
                started_at_ms: now_ms(),
                completed_at_ms: None,
                message: "update in progress".into(),
            });
        }
        if !self.commit_service(&updated, guard, stored).await? {
            return Err(Status::aborted(format!(
                "service {} changed concurrently; retry the command",
                current.spec.name
            )));
        }
        self.inspect_service(&updated.id)
    }

    pub async fn scale_service(&self, name: &str, replicas: u64) -> Result<ApiResponse, Status> {
        let (current, stored) = self.find_service(name)?;
        if current.spec.mode == ServiceMode::Global {
            return Err(Status::failed_precondition(format!(
                "scale can only be used with replicated mode: {} is global",
                current.spec.name
            )));
        }
        let mut updated = current.clone();
        updated.spec.mode = ServiceMode::Replicated { replicas };
        updated.spec_version += 1;
        updated.updated_at = now_secs();
        self.put_service(&updated, stored).await?;
        self.inspect_service(&updated.id)
    }

    pub async fn rollback_service(&self, name: &str) -> Result<ApiResponse, Status> {
        let (current, stored) = self.find_service(name)?;
        if current.previous_spec.is_none() {
            return Err(Status::failed_precondition(format!(
                "service {} has no previous spec to roll back to",
                current.spec.name
            )));
        }
        let updated = rolled_back(&current, "", now_ms());
        self.put_service(&updated, stored).await?;
        self.inspect_service(&updated.id)
    }

    pub async fn remove_service(&self, name: &str) -> Result<ApiResponse, Status> {
        let (service, stored) = self.find_service(name)?;
        match self
            .submit(Command::delete(kind::SERVICE, &service.id, Some(stored)))
            .await?
        {
            Response::Ok { .. } => Ok(ApiResponse::Done {
                message: service.spec.name,
            }),
            Response::NotFound { .. } => {
                Err(Status::not_found(format!("service {name} not found")))
            }
            Response::Conflict { .. } => Err(Status::aborted(format!(
                "service {name} changed concurrently; retry the command"
            ))),
        }
    }

    pub async fn set_strategy(&self, strategy: Strategy) -> Result<ApiResponse, Status> {
        let (cluster, version) = self
            .objects()
            .get_as::<shoal_control::objects::Cluster>(kind::CLUSTER, kind::CLUSTER)
            .map_err(internal)?
            .map(|v| (v.value, v.version))
            .ok_or_else(|| Status::failed_precondition("the swarm has no cluster object yet"))?;
        let updated = shoal_control::objects::Cluster {
            strategy,
            ..cluster
        };
        let command = Command::set(kind::CLUSTER, kind::CLUSTER, &updated, Some(version))
            .map_err(internal)?;
        if let Response::Conflict { .. } = self.submit(command).await? {
            return Err(Status::aborted("the cluster changed concurrently; retry"));
        }
        Ok(ApiResponse::Done {
            message: format!("Scheduling strategy set to {strategy}."),
        })
    }

    /// Names of the services using network `id`.
    pub fn services_on_network(&self, id: &str) -> Vec<String> {
        self.services()
            .into_iter()
            .filter(|s| s.spec.networks.iter().any(|n| n == id))
            .map(|s| s.spec.name)
            .collect()
    }

    /// Whether any unfinished task still holds an address on network `id`.
    pub fn tasks_on_network(&self, id: &str) -> usize {
        list::<Task>(&self.objects(), kind::TASK)
            .iter()
            .filter(|t| {
                t.status.state < TaskState::Complete
                    && t.status.state >= TaskState::Pending
                    && t.networks.iter().any(|a| a.network == id)
            })
            .count()
    }

    async fn put_service(&self, service: &Service, expect: u64) -> Result<(), Status> {
        let command =
            Command::set(kind::SERVICE, &service.id, service, Some(expect)).map_err(internal)?;
        match self.submit(command).await? {
            Response::Conflict { .. } => Err(Status::aborted(format!(
                "service {} changed concurrently; retry the command",
                service.spec.name
            ))),
            _ => Ok(()),
        }
    }
}
