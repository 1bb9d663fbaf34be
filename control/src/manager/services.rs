//! `service create|update|scale|rollback|rm`. They only change the service
//! object; the orchestrator makes the tasks follow. Names, networks and
//! published ports are checked by `orchestrator::admit`, and a create or
//! update commits with both guards (see `objects::guards`): two racing
//! creates never take the same name, port or virtual IP, and a service is
//! never stored on a network that `network rm` removed meanwhile.

use super::{now_ms, now_secs, Link, Manager, ManagerError, Store};
use crate::api::ApiResponse;
use crate::objects::{
    new_service_id, Cluster, GuardVersions, Named, Network, Service, ServiceMode, ServiceSpec,
    Task, UpdateState, UpdateStatus, CLUSTER_ID, DEFAULT_MAX_REPLICAS,
};
use crate::orchestrator::{
    admit, assign_vips, reserved_port_in, rolled_back, AddressBook, AddressQuarantine,
    AdmissionError,
};
use crate::store::{Command, Objects, Response};

/// How many times a create decides again after losing a race.
const ATTEMPTS: usize = 5;

impl<S: Store, L: Link> Manager<S, L> {
    /// The write of `service`, expecting `expect` for it and the guards'
    /// versions read with the decision.
    fn admitted_write(
        service: &Service,
        guards: GuardVersions,
        expect: u64,
    ) -> Result<Command, ManagerError> {
        Ok(Command::Batch(vec![
            guards
                .services_changed(&service.id)
                .map_err(ManagerError::store)?,
            guards
                .networks_changed(&service.id)
                .map_err(ManagerError::store)?,
            Command::put(service, Some(expect)).map_err(ManagerError::store)?,
        ]))
    }

    /// Gives `service` a virtual IP on each of its networks, next to every
    /// address tasks and other services hold.
    fn assign_vips(
        &self,
        objects: &Objects,
        service: &mut Service,
        networks: &[Network],
    ) -> Result<(), ManagerError> {
        let tasks: Vec<Task> = self.all(objects);
        let quarantines: Vec<AddressQuarantine> = self.all(objects);
        let mut book = AddressBook::new(&tasks, &quarantines, now_ms());
        book.reserve_vips(self.services(objects).iter().filter(|s| s.id != service.id));
        Ok(assign_vips(service, networks, &mut book)?)
    }

    /// Refuses a spec publishing a port nodes need for themselves (see
    /// `orchestrator::reserved_ports`): every node's recorded listen port
    /// counts, not only this manager's.
    fn refuse_reserved_ports(&self, spec: &ServiceSpec) -> Result<(), ManagerError> {
        let api_ports: Vec<u16> = std::iter::once(self.me.listen_port)
            .chain(self.nodes().iter().map(|n| n.listen_port))
            .collect();
        match reserved_port_in(spec, &api_ports) {
            Some(port) => Err(AdmissionError::PortReserved(port).into()),
            None => Ok(()),
        }
    }

    /// Refuses a replicated spec asking for more replicas than the swarm's
    /// cap ([`Cluster::max_replicas`]).
    fn refuse_over_cap(&self, objects: &Objects, spec: &ServiceSpec) -> Result<(), ManagerError> {
        let ServiceMode::Replicated { replicas } = spec.mode else {
            return Ok(());
        };
        let cap = objects
            .one::<Cluster>(CLUSTER_ID)
            .map_err(ManagerError::store)?
            .map_or(DEFAULT_MAX_REPLICAS, |c| c.value.max_replicas);
        if replicas > cap {
            return Err(ManagerError::OverReplicaCap {
                service: spec.name.clone(),
                replicas,
                cap,
            });
        }
        Ok(())
    }

    /// `service create`.
    pub(super) async fn create_service(
        &self,
        spec: ServiceSpec,
    ) -> Result<ApiResponse, ManagerError> {
        // Published ports right after `swarm init`, before the leader's
        // first pass made the default ingress network.
        if !spec.ports.is_empty() && self.wants_default_ingress(&self.objects())? {
            self.create_ingress().await?;
        }
        for _ in 0..ATTEMPTS {
            let objects = self.objects();
            let guards = GuardVersions::read(&objects);
            let networks: Vec<Network> = self.all(&objects);
            let mut spec = admit(spec.clone(), &self.services(&objects), &networks, None)?;
            self.resolve_payloads(&objects, &mut spec)?;
            self.refuse_reserved_ports(&spec)?;
            self.refuse_over_cap(&objects, &spec)?;
            let now = now_secs();
            let mut service = Service {
                id: new_service_id(),
                spec,
                previous_spec: None,
                spec_version: 1,
                update_status: None,
                created_at: now,
                updated_at: now,
                virtual_ips: Vec::new(),
            };
            self.assign_vips(&objects, &mut service, &networks)?;
            let write = Self::admitted_write(&service, guards, 0)?;
            if let Response::Ok { .. } = self.submit(write).await? {
                tracing::info!("service {} ({}) created", service.spec.name, service.id);
                return self.service_inspect(&service.id);
            }
        }
        Err(ManagerError::Contended {
            kind: Service::WHAT,
        })
    }

    /// `service update`: `version` is the spec version the client read.
    pub(super) async fn update_service(
        &self,
        name: &str,
        spec: ServiceSpec,
        version: Option<u64>,
        force: bool,
    ) -> Result<ApiResponse, ManagerError> {
        let objects = self.objects();
        let guards = GuardVersions::read(&objects);
        let (current, stored) = self.find_service(&objects, name)?;
        if let Some(read) = version.filter(|v| *v != current.spec_version) {
            return Err(ManagerError::Stale {
                name: current.spec.name,
                read,
                now: current.spec_version,
            });
        }
        let networks: Vec<Network> = self.all(&objects);
        let mut spec = admit(spec, &self.services(&objects), &networks, Some(&current.id))?;
        if let Some(container) = spec.task.container.as_mut() {
            container.keep_registry_auth(current.spec.task.container.as_ref());
        }
        self.resolve_payloads(&objects, &mut spec)?;
        self.refuse_reserved_ports(&spec)?;
        self.refuse_over_cap(&objects, &spec)?;
        if force {
            spec.task.force_update = current.spec.task.force_update + 1;
        }
        if std::mem::discriminant(&spec.mode) != std::mem::discriminant(&current.spec.mode) {
            return Err(ManagerError::ModeChange);
        }
        let replaces_tasks =
            spec.task != current.spec.task || spec.networks != current.spec.networks;
        let mut updated = current.clone();
        updated.previous_spec = Some(std::mem::replace(&mut updated.spec, spec));
        self.assign_vips(&objects, &mut updated, &networks)?;
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
        let write = Self::admitted_write(&updated, guards, stored)?;
        match self.submit(write).await? {
            Response::Ok { .. } => self.service_inspect(&updated.id),
            Response::Conflict { .. } | Response::NotFound { .. } => Err(ManagerError::Changed {
                kind: Service::WHAT,
                name: current.spec.name,
            }),
        }
    }

    /// `service scale SERVICE=N`.
    pub(super) async fn scale_service(
        &self,
        name: &str,
        replicas: u64,
    ) -> Result<ApiResponse, ManagerError> {
        let objects = self.objects();
        let (current, stored) = self.find_service(&objects, name)?;
        if current.spec.mode == ServiceMode::Global {
            return Err(ManagerError::ScaleGlobal(current.spec.name));
        }
        let mut updated = current;
        updated.spec.mode = ServiceMode::Replicated { replicas };
        self.refuse_over_cap(&objects, &updated.spec)?;
        updated.spec_version += 1;
        updated.updated_at = now_secs();
        self.put_service(&updated, stored).await?;
        self.service_inspect(&updated.id)
    }

    /// `service rollback`: back to the previous spec.
    pub(super) async fn rollback_service(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let (current, stored) = self.find_service(&self.objects(), name)?;
        if current.previous_spec.is_none() {
            return Err(ManagerError::NoPreviousSpec(current.spec.name));
        }
        let updated = rolled_back(&current, "", now_ms());
        self.put_service(&updated, stored).await?;
        self.service_inspect(&updated.id)
    }

    /// `service rm`: the orchestrator removes its tasks.
    pub(super) async fn remove_service(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let (service, stored) = self.find_service(&self.objects(), name)?;
        match self
            .submit(Command::remove::<Service>(&service.id, Some(stored)))
            .await?
        {
            Response::Ok { .. } => Ok(ApiResponse::Done {
                message: service.spec.name,
            }),
            Response::NotFound { .. } => Err(crate::objects::LookupError::NotFound {
                kind: Service::WHAT,
                name: name.to_string(),
            }
            .into()),
            Response::Conflict { .. } => Err(ManagerError::Changed {
                kind: Service::WHAT,
                name: name.to_string(),
            }),
        }
    }

    async fn put_service(&self, service: &Service, expect: u64) -> Result<(), ManagerError> {
        let put = Command::put(service, Some(expect)).map_err(ManagerError::store)?;
        match self.submit(put).await? {
            Response::Conflict { .. } => Err(ManagerError::Changed {
                kind: Service::WHAT,
                name: service.spec.name.clone(),
            }),
            Response::Ok { .. } | Response::NotFound { .. } => Ok(()),
        }
    }
}
