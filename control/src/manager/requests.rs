//! Where every `Control` request is decided. [`Manager::handle`] checks the
//! caller and routes: a request that needs the leader goes there (waiting a
//! bounded time for one to exist); [`Manager::decide`] then runs the one
//! handler of each request, by an exhaustive match: a request without a
//! handler does not compile.

use std::time::Duration;

use super::{Call, Caller, ErrorCode, Link, Manager, ManagerError, Store};
use crate::api::{ApiRequest, ApiResponse, PayloadClass};
use crate::objects::{ConfigKind, NetworkRequest, SecretKind};

/// How long a request waits for a leader before failing with the quorum
/// error.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How often it looks for one meanwhile.
const LEADER_POLL: Duration = Duration::from_millis(200);

/// Where a request that needs the leader goes now.
enum Route {
    Here,
    To(String),
    Nowhere,
}

impl<S: Store, L: Link> Manager<S, L> {
    /// Answers `request` from `caller`.
    pub async fn handle(
        &self,
        caller: &Caller,
        request: ApiRequest,
    ) -> Result<ApiResponse, ManagerError> {
        self.authorize_here(caller, Call::Control(&request), &self.objects())?;
        if request.needs_leader() {
            self.on_leader(request).await
        } else {
            self.decide(request).await
        }
    }

    fn route(&self) -> Route {
        if self.is_leader() {
            Route::Here
        } else {
            self.leader_addr().map_or(Route::Nowhere, Route::To)
        }
    }

    /// Decides `request` here if this manager leads, else forwards it to
    /// the leader. The leader may have just died: a missing or unreachable
    /// leader is retried for [`LEADER_WAIT`], then it is the quorum error.
    async fn on_leader(&self, request: ApiRequest) -> Result<ApiResponse, ManagerError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let retry = match self.route() {
                Route::Here => return self.decide(request).await,
                Route::To(leader) => match self.link.call(&leader, &request).await {
                    Err(e) if e.code() == ErrorCode::NotLeader => e,
                    Err(e @ ManagerError::Unreachable { .. }) => e,
                    answer => return answer,
                },
                Route::Nowhere => self.quorum_error(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(if retry.code() == ErrorCode::NoQuorum {
                    retry
                } else {
                    self.quorum_error()
                });
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Decides `request` on this manager: the one place each request is
    /// handled.
    pub(super) async fn decide(&self, request: ApiRequest) -> Result<ApiResponse, ManagerError> {
        match request {
            ApiRequest::Info => Ok(self.info()),
            ApiRequest::JoinToken { role, rotate } => self.join_token(role, rotate).await,
            ApiRequest::NodeList => Ok(self.node_list()),
            ApiRequest::NodeInspect { node } => self.node_inspect(&node),
            ApiRequest::NodeUpdate {
                node,
                availability,
                label_add,
                label_rm,
            } => {
                self.update_node_spec(&node, availability, label_add, label_rm)
                    .await
            }
            ApiRequest::NodeSetRole { node, role } => self.set_role(&node, role).await,
            ApiRequest::NodeRemove { node, force } => self.remove_node(&node, force).await,
            ApiRequest::SwarmUpdate {
                autolock,
                cert_expiry_secs,
                rotate_gossip_key,
            } => {
                self.update_swarm(autolock, cert_expiry_secs, rotate_gossip_key)
                    .await
            }
            ApiRequest::UnlockKey => self.unlock_key(),
            ApiRequest::NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                mtu,
                labels,
                ingress,
                attachable,
            } => {
                self.create_network(NetworkRequest {
                    name,
                    driver,
                    subnet,
                    gateway,
                    mtu,
                    labels,
                    ingress,
                    attachable,
                })
                .await
            }
            ApiRequest::NetworkList => self.network_list(),
            ApiRequest::NetworkInspect { name_or_id } => self.network_inspect(&name_or_id),
            ApiRequest::NetworkRemove { name_or_id } => self.remove_network(&name_or_id).await,
            ApiRequest::ServiceCreate { spec } => self.create_service(*spec).await,
            ApiRequest::ServiceList => Ok(self.service_list()),
            ApiRequest::ServiceInspect { service } => self.service_inspect(&service),
            ApiRequest::ServiceUpdate {
                service,
                spec,
                version,
                force,
            } => self.update_service(&service, *spec, version, force).await,
            ApiRequest::ServiceScale { service, replicas } => {
                self.scale_service(&service, replicas).await
            }
            ApiRequest::ServiceRollback { service } => self.rollback_service(&service).await,
            ApiRequest::ServiceRemove { service } => self.remove_service(&service).await,
            ApiRequest::ServicePs { service } => self.service_ps(&service),
            ApiRequest::NodePs { node } => self.node_ps(&node),
            ApiRequest::ServiceLogs { query } => self.service_logs(query).await,
            ApiRequest::SetStrategy { strategy } => self.set_strategy(strategy).await,
            ApiRequest::SetTaskHistoryLimit { limit } => self.set_task_history_limit(limit).await,
            ApiRequest::SetMaxReplicas { max_replicas } => {
                self.set_max_replicas(max_replicas).await
            }
            ApiRequest::AddManager { node_id } => self.add_manager(&node_id).await,
            ApiRequest::SecretCreate { name, labels, data } => {
                self.create_payload::<SecretKind>(name, labels, data).await
            }
            ApiRequest::SecretList => self.payload_list::<SecretKind>(),
            ApiRequest::SecretInspect { secret } => self.payload_inspect::<SecretKind>(&secret),
            ApiRequest::SecretRemove { secret } => self.remove_payload::<SecretKind>(&secret).await,
            ApiRequest::ConfigCreate { name, labels, data } => {
                self.create_payload::<ConfigKind>(name, labels, data).await
            }
            ApiRequest::PayloadUpdate {
                class,
                name_or_id,
                version,
                labels,
                data,
            } => match class {
                PayloadClass::Secret => {
                    self.update_payload::<SecretKind>(&name_or_id, version, labels, data)
                        .await
                }
                PayloadClass::Config => {
                    self.update_payload::<ConfigKind>(&name_or_id, version, labels, data)
                        .await
                }
            },
            ApiRequest::ConfigList => self.payload_list::<ConfigKind>(),
            ApiRequest::ConfigInspect { config } => self.payload_inspect::<ConfigKind>(&config),
            ApiRequest::ConfigRemove { config } => self.remove_payload::<ConfigKind>(&config).await,
        }
    }
}
