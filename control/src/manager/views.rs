//! The reads: `info`, `node ls|inspect|ps`, `network ls|inspect`,
//! `service ls|inspect|ps`. They answer from this manager's copy of the
//! store, so they work without quorum, and never write.

use std::collections::HashMap;

use super::{now_ms, Link, Manager, ManagerError, Store};
use crate::api::{
    ApiResponse, ClusterInfo, NetworkFailureView, NetworkView, NodeView, ServiceView, TaskView,
};
use crate::objects::{find, Network, Node, Service, Task};
use crate::orchestrator::{desired_tasks, AddressBook, AddressQuarantine};
use crate::store::Objects;

impl<S: Store, L: Link> Manager<S, L> {
    pub(super) fn info(&self) -> ApiResponse {
        ApiResponse::Info(ClusterInfo {
            node_id: self.me.node_id.clone(),
            cluster_id: self.me.cluster_id.clone(),
            role: crate::objects::Role::Manager,
            leader: self.leader_addr(),
            managers: self.manager_addrs(),
        })
    }

    /// `self`, an id, a hostname or a unique id prefix.
    pub(super) fn find_node(&self, name: &str) -> Result<Node, ManagerError> {
        let wanted = if name == "self" {
            self.me.node_id.as_str()
        } else {
            name
        };
        Ok(find(&self.nodes(), wanted)?.clone())
    }

    fn node_view(&self, node: &Node) -> NodeView {
        NodeView::new(node, self.manager_status(node))
    }

    pub(super) fn node_list(&self) -> ApiResponse {
        let nodes = self.nodes().iter().map(|n| self.node_view(n)).collect();
        ApiResponse::Nodes { nodes }
    }

    pub(super) fn node_inspect(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let node = self.find_node(name)?;
        Ok(ApiResponse::Node {
            node: Box::new(self.node_view(&node)),
        })
    }

    /// Every network, by name.
    pub(super) fn networks(&self) -> Result<Vec<Network>, ManagerError> {
        let mut networks = self
            .objects()
            .all::<Network>()
            .map_err(ManagerError::store)?;
        networks.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(networks)
    }

    pub(super) fn network_list(&self) -> Result<ApiResponse, ManagerError> {
        Ok(ApiResponse::Networks {
            networks: self.networks()?.iter().map(NetworkView::new).collect(),
        })
    }

    pub(super) fn network_inspect(&self, name_or_id: &str) -> Result<ApiResponse, ManagerError> {
        let networks = self.networks()?;
        let network = find(&networks, name_or_id)?;
        let objects = self.objects();
        let tasks: Vec<Task> = self.all(&objects);
        let quarantines: Vec<AddressQuarantine> = self.all(&objects);
        let services: Vec<Service> = self.all(&objects);
        let mut book = AddressBook::new(&tasks, &quarantines, now_ms());
        book.reserve_vips(&services);
        let mut view = NetworkView::new(network);
        view.addresses = Some(book.usage(network));
        let nodes: Vec<Node> = self.all(&objects);
        view.failures = network_failures(network, &nodes);
        Ok(ApiResponse::Network {
            network: Box::new(view),
        })
    }

    /// Every service, by name.
    pub(super) fn services(&self, objects: &Objects) -> Vec<Service> {
        let mut services: Vec<Service> = self.all(objects);
        services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        services
    }

    /// Docker's lookup of a service, and its version in the store.
    pub(super) fn find_service(
        &self,
        objects: &Objects,
        name: &str,
    ) -> Result<(Service, u64), ManagerError> {
        let services = self.services(objects);
        let service = find(&services, name)?.clone();
        let version = objects.version_of::<Service>(&service.id);
        Ok((service, version))
    }

    /// Views of `services`, reading tasks, nodes and networks once.
    fn service_views(&self, objects: &Objects, services: &[Service]) -> Vec<ServiceView> {
        let tasks: Vec<Task> = self.all(objects);
        let nodes: Vec<Node> = self.all(objects);
        let networks = network_names(&self.all(objects));
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

    pub(super) fn service_list(&self) -> ApiResponse {
        let objects = self.objects();
        ApiResponse::Services {
            services: self.service_views(&objects, &self.services(&objects)),
        }
    }

    pub(super) fn service_inspect(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let objects = self.objects();
        let (service, _) = self.find_service(&objects, name)?;
        let view = self
            .service_views(&objects, std::slice::from_ref(&service))
            .remove(0);
        Ok(ApiResponse::Service {
            service: Box::new(view),
        })
    }

    /// `service ps` or `node ps`: the tasks `filter` keeps, newest first
    /// per slot.
    fn task_list(&self, filter: impl Fn(&Task) -> bool) -> ApiResponse {
        let objects = self.objects();
        let nodes: HashMap<String, String> = self
            .all::<Node>(&objects)
            .into_iter()
            .map(|n| (n.id, n.hostname))
            .collect();
        let networks = network_names(&self.all(&objects));
        let services: HashMap<String, Service> = self
            .all::<Service>(&objects)
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut tasks: Vec<Task> = self
            .all::<Task>(&objects)
            .into_iter()
            .filter(|t| filter(t))
            .collect();
        tasks.sort_by(|a, b| {
            (a.service_name.as_str(), a.slot, a.node_id.as_deref())
                .cmp(&(b.service_name.as_str(), b.slot, b.node_id.as_deref()))
                .then(b.created_at_ms.cmp(&a.created_at_ms))
        });
        ApiResponse::Tasks {
            tasks: tasks
                .iter()
                .map(|t| {
                    let mut view = TaskView::new(
                        t,
                        |id| nodes.get(id).cloned(),
                        |id| networks.get(id).cloned().unwrap_or_else(|| id.to_string()),
                    );
                    view.up_to_date = services
                        .get(t.service_id.as_str())
                        .is_some_and(|s| t.spec == s.spec.task);
                    view
                })
                .collect(),
        }
    }

    pub(super) fn service_ps(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let (service, _) = self.find_service(&self.objects(), name)?;
        Ok(self.task_list(|t| t.service_id == service.id))
    }

    pub(super) fn node_ps(&self, name: &str) -> Result<ApiResponse, ManagerError> {
        let node = self.find_node(name)?;
        Ok(self.task_list(|t| t.node_id.as_deref() == Some(node.id.as_str())))
    }
}

/// Network names by id.
fn network_names(networks: &[Network]) -> HashMap<String, String> {
    networks
        .iter()
        .map(|n| (n.id.clone(), n.name.clone()))
        .collect()
}

/// What `nodes` report they cannot build on `network`: the network itself,
/// then tasks' sandboxes on it, then (for the ingress network) the routing
/// mesh's published ports, node by node.
fn network_failures(network: &Network, nodes: &[Node]) -> Vec<NetworkFailureView> {
    let mut out = Vec::new();
    for n in nodes {
        let at = |error: &str| NetworkFailureView {
            node: n.hostname.clone(),
            node_id: n.id.clone(),
            error: error.to_string(),
            ..NetworkFailureView::default()
        };
        if let Some(error) = n.network_errors.get(&network.id) {
            out.push(at(error));
        }
        for f in n
            .build_failures
            .sandboxes
            .iter()
            .filter(|f| f.network == network.id)
        {
            out.push(NetworkFailureView {
                task_id: Some(f.task_id.clone()),
                ..at(&f.error)
            });
        }
        if network.spec.ingress {
            for (port, error) in &n.build_failures.ports {
                out.push(NetworkFailureView {
                    port: Some(port.clone()),
                    ..at(error)
                });
            }
        }
    }
    out
}
