//! The agent as the Docker Engine API's [`Backend`]: requests go to
//! [`Agent::handle_local`], exactly as the CLI's on `shoal.sock`, and the
//! agent's typed errors become Docker's status codes.

use shoal_control::error_chain::ErrorChain;
use std::sync::Arc;

use futures::future::BoxFuture;
use shoal_control::api::{ApiResponse, LocalRequest};
use shoal_control::manager::ErrorCode;

use super::agent::Standing;
use super::{Agent, AgentError, LocalAnswer};
use crate::docker_api::{Backend, NodeState, Refusal, RefusalKind};

struct AgentBackend(Arc<Agent>);

/// `agent` behind the Docker API.
pub fn backend(agent: Arc<Agent>) -> Arc<dyn Backend> {
    Arc::new(AgentBackend(agent))
}

impl Backend for AgentBackend {
    fn call(&self, request: LocalRequest) -> BoxFuture<'_, Result<ApiResponse, Refusal>> {
        Box::pin(async move {
            match self.0.handle_local(request).await.map_err(refusal)? {
                LocalAnswer::Cluster(answer) => Ok(answer),
                other => Err(Refusal::new(
                    RefusalKind::Internal,
                    format!("unexpected answer {other:?}"),
                )),
            }
        })
    }

    fn images(&self) -> Option<Arc<crate::image::ImageStore>> {
        self.0.images()
    }

    fn containers(&self) -> Option<Arc<crate::executor::ContainerRuntime>> {
        self.0.containers()
    }

    fn node_state(&self) -> NodeState {
        match self.0.standing() {
            Standing::Outside => NodeState::Inactive,
            Standing::Locked => NodeState::Locked,
            Standing::Member { manager: None, .. } => NodeState::Worker,
            Standing::Member {
                manager: Some(_), ..
            } => NodeState::Manager,
        }
    }
}

/// Docker's class of an agent error: a node that cannot answer cluster
/// requests (outside a swarm, a worker, locked, no quorum) is a 503, as
/// with dockerd.
fn refusal(e: AgentError) -> Refusal {
    let kind = match &e {
        AgentError::NotInSwarm | AgentError::NotAManager => RefusalKind::Unavailable,
        AgentError::Secret(super::at_rest::SecretError::Locked) => RefusalKind::Unavailable,
        _ => match e.code() {
            ErrorCode::NotFound => RefusalKind::NotFound,
            ErrorCode::Conflict => RefusalKind::Conflict,
            ErrorCode::Invalid => RefusalKind::Invalid,
            ErrorCode::Permission => RefusalKind::Forbidden,
            ErrorCode::NoQuorum
            | ErrorCode::NotLeader
            | ErrorCode::Removed
            | ErrorCode::Unavailable => RefusalKind::Unavailable,
            ErrorCode::Internal => RefusalKind::Internal,
        },
    };
    Refusal::new(kind, e.chain().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::manager::ManagerError;
    use shoal_control::objects::LookupError;

    #[test]
    fn agent_errors_get_dockers_status_codes() {
        assert_eq!(refusal(AgentError::NotAManager).status().as_u16(), 503);
        assert_eq!(refusal(AgentError::NotInSwarm).status().as_u16(), 503);
        assert_eq!(refusal(AgentError::AlreadyMember).status().as_u16(), 400);
        assert_eq!(refusal(AgentError::Changing).status().as_u16(), 503);
        let missing = AgentError::Manager(ManagerError::Lookup(LookupError::NotFound {
            kind: "service",
            name: "web".into(),
        }));
        let r = refusal(missing);
        assert_eq!(r.status().as_u16(), 404);
        assert!(r.message.contains("web"), "{}", r.message);
    }
}
