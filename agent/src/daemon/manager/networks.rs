//! `network create|ls|inspect|rm` on a manager. Allocation (VNI, subnet,
//! gateway) is decided by `shoal_control::objects::plan_network` and
//! committed with the allocation guard, so two creates racing on the leader
//! (or across a leader change) never get the same VNI or overlapping
//! subnets: the loser's write conflicts and it plans again from a fresh read.
//! The store's conditional writes make this safe without a lock here.

use shoal_control::api::{ApiResponse, NetworkView};
use shoal_control::objects::{
    create_command, networks_and_guard, new_node_id, plan_network, Network, NetworkCreateError,
    NetworkLookupError, NetworkRequest, NetworkSpec,
};
use shoal_control::store::{kind, Command, Response};
use tonic::Status;

use super::{now_secs, ManagerCtx};

/// How many times a create plans again after losing a race.
const CREATE_ATTEMPTS: usize = 5;

impl ManagerCtx {
    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<Network>, Status> {
        let mut networks: Vec<Network> = self
            .objects()
            .list_as::<Network>(kind::NETWORK)
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .map(|(_, v)| v.value)
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(networks)
    }

    /// What nodes need for their data plane: every network's spec, or
    /// `None` when the store cannot be read (nodes keep their last list).
    pub fn network_specs(&self) -> Option<Vec<NetworkSpec>> {
        match self.networks() {
            Ok(networks) => Some(networks.into_iter().map(|n| n.spec).collect()),
            Err(e) => {
                tracing::error!("unreadable network objects: {}", e.message());
                None
            }
        }
    }

    pub fn list_networks(&self) -> Result<ApiResponse, Status> {
        Ok(ApiResponse::Networks {
            networks: self.networks()?.iter().map(NetworkView::new).collect(),
        })
    }

    pub fn inspect_network(&self, name_or_id: &str) -> Result<ApiResponse, Status> {
        let networks = self.networks()?;
        let network = Network::find(&networks, name_or_id).map_err(lookup_status)?;
        Ok(ApiResponse::Network {
            network: Box::new(NetworkView::new(network)),
        })
    }

    /// Leader only: allocates and stores a new network.
    pub async fn create_network(&self, request: NetworkRequest) -> Result<ApiResponse, Status> {
        // The ingress network comes first, whoever asks first, so it always
        // holds the lowest VNI.
        if !self.networks()?.iter().any(|n| n.spec.ingress) {
            self.create_ingress().await?;
        }
        self.store_network(request).await
    }

    /// Leader only: allocates and stores `request`, retrying lost races.
    pub(super) async fn store_network(
        &self,
        request: NetworkRequest,
    ) -> Result<ApiResponse, Status> {
        for _ in 0..CREATE_ATTEMPTS {
            let (existing, guard) =
                networks_and_guard(&self.objects()).map_err(|e| Status::internal(e.to_string()))?;
            let network =
                plan_network(&existing, &request, new_node_id(rand::random()), now_secs())
                    .map_err(create_status)?;
            let command =
                create_command(&network, guard).map_err(|e| Status::internal(e.to_string()))?;
            match self.submit(command).await? {
                Response::Conflict { .. } => continue,
                _ => {
                    tracing::info!(
                        "network {} ({}) created: VNI {}, subnet {}",
                        network.name,
                        network.id,
                        network.spec.vni,
                        network.spec.subnet
                    );
                    return Ok(ApiResponse::Network {
                        network: Box::new(NetworkView::new(&network)),
                    });
                }
            }
        }
        Err(Status::aborted(
            "other networks were being created at the same time; retry the command",
        ))
    }

    /// Leader only: removes a network, refused while a service uses it or a
    /// task still holds an address on it.
    pub async fn remove_network(&self, name_or_id: &str) -> Result<ApiResponse, Status> {
        let networks = self.networks()?;
        let network = Network::find(&networks, name_or_id).map_err(lookup_status)?;
        let users = self.services_on_network(&network.id);
        if !users.is_empty() {
            return Err(Status::failed_precondition(format!(
                "network {} is in use by service {}; remove the service or its --network first",
                network.name,
                users.join(", ")
            )));
        }
        let holders = self.tasks_on_network(&network.id);
        if holders > 0 {
            return Err(Status::failed_precondition(format!(
                "network {} still has {holders} task(s) stopping on it; retry in a few seconds",
                network.name
            )));
        }
        let version = self
            .objects()
            .get(kind::NETWORK, &network.id)
            .map(|v| v.version);
        match self
            .submit(Command::delete(kind::NETWORK, &network.id, version))
            .await?
        {
            Response::Ok { .. } => Ok(ApiResponse::Done {
                message: network.name.clone(),
            }),
            Response::NotFound { .. } => {
                Err(Status::not_found(format!("network {name_or_id} not found")))
            }
            Response::Conflict { .. } => Err(Status::aborted(format!(
                "network {name_or_id} changed concurrently; retry the command"
            ))),
        }
    }
}

fn lookup_status(e: NetworkLookupError) -> Status {
    match e {
        NetworkLookupError::NotFound(_) => Status::not_found(e.to_string()),
        NetworkLookupError::Ambiguous { .. } => Status::invalid_argument(e.to_string()),
    }
}

fn create_status(e: NetworkCreateError) -> Status {
    match e {
        NetworkCreateError::NameTaken(_) => Status::already_exists(e.to_string()),
        NetworkCreateError::PoolExhausted { .. } | NetworkCreateError::VniExhausted => {
            Status::resource_exhausted(e.to_string())
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}
