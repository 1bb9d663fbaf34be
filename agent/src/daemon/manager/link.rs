//! The manager core's calls to other managers, over this node's mTLS
//! channels: a status coming back is turned into a typed manager error
//! (`shoal_control::proto::status::from_status`), never read as text.

use shoal_control::api::{
    ApiRequest, ApiResponse, Heartbeat, HeartbeatResponse, JoinRequest, JoinResponse,
};
use shoal_control::manager::{Link, ManagerError};
use shoal_control::proto::status::from_status;

use super::super::peers::{from_json, to_json, Peers};

/// [`Link`] over [`Peers`].
pub struct PeerLink(pub Peers);

impl Link for PeerLink {
    async fn call(&self, manager: &str, request: &ApiRequest) -> Result<ApiResponse, ManagerError> {
        self.0
            .call(manager, request)
            .await
            .map_err(|s| from_status(manager, &s))
    }

    async fn heartbeat(
        &self,
        manager: &str,
        heartbeat: &Heartbeat,
    ) -> Result<HeartbeatResponse, ManagerError> {
        let answer = async {
            let json = self.0.heartbeat(manager, to_json(heartbeat)?).await?;
            from_json(&json)
        };
        answer.await.map_err(|s| from_status(manager, &s))
    }

    async fn join(
        &self,
        manager: &str,
        request: &JoinRequest,
    ) -> Result<JoinResponse, ManagerError> {
        let answer = async {
            let json = self.0.ca_join(manager, to_json(request)?).await?;
            from_json(&json)
        };
        answer.await.map_err(|s| from_status(manager, &s))
    }
}
