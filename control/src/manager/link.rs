//! What the manager core asks of the other managers: forward a request to
//! the leader, relay a heartbeat or a join there. The daemon gives it mTLS
//! gRPC clients; tests connect cores in memory.

use std::future::Future;

use super::ManagerError;
use crate::api::{
    ApiRequest, ApiResponse, Heartbeat, HeartbeatResponse, JoinRequest, JoinResponse,
};

/// Calls to another manager's API (`ip:port`), made with this manager's
/// identity. A transport failure is [`ManagerError::Unreachable`]; the
/// other manager's refusals keep their code.
pub trait Link: Send + Sync + 'static {
    fn call(
        &self,
        manager: &str,
        request: &ApiRequest,
    ) -> impl Future<Output = Result<ApiResponse, ManagerError>> + Send;

    fn heartbeat(
        &self,
        manager: &str,
        heartbeat: &Heartbeat,
    ) -> impl Future<Output = Result<HeartbeatResponse, ManagerError>> + Send;

    fn join(
        &self,
        manager: &str,
        request: &JoinRequest,
    ) -> impl Future<Output = Result<JoinResponse, ManagerError>> + Send;
}

/// A manager alone: no other manager answers.
pub struct NoLink;

impl NoLink {
    fn unreachable(manager: &str) -> ManagerError {
        ManagerError::Unreachable {
            manager: manager.to_string(),
            detail: "no link to other managers".into(),
        }
    }
}

impl Link for NoLink {
    async fn call(&self, manager: &str, _: &ApiRequest) -> Result<ApiResponse, ManagerError> {
        Err(NoLink::unreachable(manager))
    }

    async fn heartbeat(
        &self,
        manager: &str,
        _: &Heartbeat,
    ) -> Result<HeartbeatResponse, ManagerError> {
        Err(NoLink::unreachable(manager))
    }

    async fn join(&self, manager: &str, _: &JoinRequest) -> Result<JoinResponse, ManagerError> {
        Err(NoLink::unreachable(manager))
    }
}
