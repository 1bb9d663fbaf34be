//! `network create|rm` and the swarm's ingress network. Allocation (VNI,
//! subnet, gateway) is decided by `objects::plan_network` and committed
//! with the network guard, so two creates racing on the leader (or across a
//! leader change) never get the same VNI or overlapping subnets. `network
//! rm` writes both guards: a service created on the network meanwhile, or
//! a create that saw the network, makes one of the two writes conflict, and
//! the loser decides again on a fresh read.

use super::{now_secs, Link, Manager, ManagerError, Store};
use crate::api::{ApiResponse, NetworkView};
use crate::error_chain::ErrorChain;
use crate::objects::{
    check_underlay, create_command, find, networks_and_guard, new_network_id, plan_network,
    Cluster, GuardVersions, Named, Network, NetworkCreateError, NetworkRequest, NetworkSpec, Node,
    Service, Task, TaskState, CLUSTER_ID,
};
use crate::store::{Command, Objects, Response};

/// The ingress network's name and preferred subnet, as in Swarm.
pub const INGRESS_NAME: &str = "ingress";
const INGRESS_SUBNET: &str = "10.255.0.0/16";

/// How many times a network change decides again after losing a race.
const ATTEMPTS: usize = 5;

impl<S: Store, L: Link> Manager<S, L> {
    /// What nodes need for their data plane: every network's spec, or
    /// `None` when the store cannot be read (nodes keep their last list).
    pub(super) fn network_specs(&self) -> Option<Vec<NetworkSpec>> {
        match self.networks() {
            Ok(networks) => Some(networks.into_iter().map(|n| n.spec).collect()),
            Err(e) => {
                tracing::error!("unreadable network objects: {}", e.chain());
                None
            }
        }
    }

    /// Whether the leader makes the default ingress network now: the swarm
    /// has none, and none was ever removed (after `network rm` of the
    /// ingress network, only `network create --ingress` makes one).
    pub(super) fn wants_default_ingress(&self, objects: &Objects) -> Result<bool, ManagerError> {
        if self.networks_in(objects)?.iter().any(|n| n.spec.ingress) {
            return Ok(false);
        }
        let removed = objects
            .one::<Cluster>(CLUSTER_ID)
            .map_err(ManagerError::store)?
            .is_some_and(|c| c.value.ingress_removed);
        Ok(!removed)
    }

    /// `network create` (leader only). The default ingress network comes
    /// first, whoever asks first, so it always holds the lowest VNI; with
    /// `--ingress` the network asked for is the swarm's ingress network
    /// (there is at most one).
    pub(super) async fn create_network(
        &self,
        request: NetworkRequest,
    ) -> Result<ApiResponse, ManagerError> {
        if !request.ingress && self.wants_default_ingress(&self.objects())? {
            self.create_ingress().await?;
        }
        let network = self.store_network(request).await?;
        Ok(ApiResponse::Network {
            network: Box::new(NetworkView::new(&network)),
        })
    }

    /// Allocates and stores `request`, planning again after a lost race.
    async fn store_network(&self, request: NetworkRequest) -> Result<Network, ManagerError> {
        for _ in 0..ATTEMPTS {
            let (existing, guards) =
                networks_and_guard(&self.objects()).map_err(ManagerError::store)?;
            let network = plan_network(&existing, &request, new_network_id(), now_secs())?;
            let nodes: Vec<Node> = self.all(&self.objects());
            check_underlay(
                network.spec.subnet,
                nodes
                    .iter()
                    .filter_map(|n| Some((n.hostname.as_str(), n.addr.parse().ok()?))),
            )?;
            let command = create_command(&network, guards).map_err(ManagerError::store)?;
            match self.submit(command).await? {
                Response::Conflict { .. } => continue,
                Response::Ok { .. } | Response::NotFound { .. } => {
                    tracing::info!(
                        "network {} ({}) created: VNI {}, subnet {}",
                        network.name,
                        network.id,
                        network.spec.vni,
                        network.spec.subnet
                    );
                    return Ok(network);
                }
            }
        }
        Err(ManagerError::Contended {
            kind: Network::WHAT,
        })
    }

    /// Creates the swarm's ingress network: Swarm's address range when
    /// free, else a subnet of the default pool.
    pub(super) async fn create_ingress(&self) -> Result<(), ManagerError> {
        let request = |subnet: Option<&str>| NetworkRequest {
            name: INGRESS_NAME.to_string(),
            subnet: subnet.map(str::to_string),
            ingress: true,
            ..NetworkRequest::default()
        };
        match self.store_network(request(Some(INGRESS_SUBNET))).await {
            Ok(_) => Ok(()),
            Err(ManagerError::NetworkCreate(
                NetworkCreateError::Overlap { .. } | NetworkCreateError::UnderlayOverlap { .. },
            )) => {
                tracing::warn!(
                    "ingress network: {INGRESS_SUBNET} is taken; taking a subnet from the default pool"
                );
                self.store_network(request(None)).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// `network rm` (leader only): refused while a service uses the network
    /// (for the ingress network: publishes a port) or a task still holds an
    /// address on it. Removing the ingress network also records that the
    /// leader makes no default one again.
    pub(super) async fn remove_network(
        &self,
        name_or_id: &str,
    ) -> Result<ApiResponse, ManagerError> {
        for _ in 0..ATTEMPTS {
            let objects = self.objects();
            let guards = GuardVersions::read(&objects);
            let networks = self.networks_in(&objects)?;
            let network = find(&networks, name_or_id)?;
            if network.spec.ingress {
                if let Some(user) = self
                    .services(&objects)
                    .into_iter()
                    .find(|s| !s.spec.ports.is_empty())
                {
                    return Err(ManagerError::IngressInUse(user.spec.name));
                }
            }
            let users = self.services_on_network(&objects, &network.id);
            if !users.is_empty() {
                return Err(ManagerError::NetworkInUse {
                    network: network.name.clone(),
                    services: users.join(", "),
                });
            }
            let holders = self.tasks_on_network(&objects, &network.id);
            if holders > 0 {
                return Err(ManagerError::NetworkDraining {
                    network: network.name.clone(),
                    tasks: holders,
                });
            }
            let version = objects.version_of::<Network>(&network.id);
            let mut commands = vec![
                guards
                    .networks_changed(&network.id)
                    .map_err(ManagerError::store)?,
                guards
                    .services_changed(&network.id)
                    .map_err(ManagerError::store)?,
                Command::remove::<Network>(&network.id, Some(version)),
            ];
            if network.spec.ingress {
                commands.extend(Self::ingress_removed(&objects)?);
            }
            let command = Command::Batch(commands);
            match self.submit(command).await? {
                Response::Conflict { .. } => continue,
                Response::Ok { .. } => {
                    return Ok(ApiResponse::Done {
                        message: network.name.clone(),
                    })
                }
                Response::NotFound { .. } => {
                    return Err(crate::objects::LookupError::NotFound {
                        kind: Network::WHAT,
                        name: name_or_id.to_string(),
                    }
                    .into())
                }
            }
        }
        Err(ManagerError::Contended {
            kind: Network::WHAT,
        })
    }

    /// The write recording that the ingress network was removed, if the
    /// cluster object does not say so yet.
    fn ingress_removed(objects: &Objects) -> Result<Option<Command>, ManagerError> {
        let Some(cluster) = objects
            .one::<Cluster>(CLUSTER_ID)
            .map_err(ManagerError::store)?
            .filter(|c| !c.value.ingress_removed)
        else {
            return Ok(None);
        };
        let updated = Cluster {
            ingress_removed: true,
            ..cluster.value
        };
        Command::put(&updated, Some(cluster.version))
            .map(Some)
            .map_err(ManagerError::store)
    }

    fn networks_in(&self, objects: &Objects) -> Result<Vec<Network>, ManagerError> {
        objects.all::<Network>().map_err(ManagerError::store)
    }

    /// Names of the services using network `id`.
    fn services_on_network(&self, objects: &Objects, id: &str) -> Vec<String> {
        self.services(objects)
            .into_iter()
            .filter(|s| s.spec.networks.iter().any(|n| n == id))
            .map(|s: Service| s.spec.name)
            .collect()
    }

    /// How many unfinished tasks still hold an address on network `id`.
    fn tasks_on_network(&self, objects: &Objects, id: &str) -> usize {
        self.all::<Task>(objects)
            .iter()
            .filter(|t| {
                t.status.state < TaskState::Complete
                    && t.status.state >= TaskState::Pending
                    && t.networks.iter().any(|a| a.network == id)
            })
            .count()
    }
}
