//! Why a local verb (`swarm init|join|leave|unlock`, a cluster request on a
//! node that cannot answer it, `members`, `endpoint`) failed, each with the
//! message Docker users know, and the one mapping to a gRPC status for the
//! CLI.

use shoal_control::ca::CaError;
use shoal_control::error_chain::ErrorChain;
use shoal_control::manager::{ErrorCode, ManagerError};
use shoal_control::proto::status::status;
use tonic::Status;

use super::super::at_rest::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to a swarm and try again.")]
    NotInSwarm,
    #[error("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.")]
    NotAManager,
    #[error("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.")]
    AlreadyMember,
    #[error("This node is not part of a swarm")]
    NotMember,
    #[error("You are attempting to leave the swarm on a node that is participating as a manager. Demote it first with `shoal node demote`, or use `--force` to leave anyway (the remaining managers may lose quorum).")]
    ManagerMustForce,
    #[error("Error: swarm is not locked")]
    NotLocked,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("advertise address must be an IP address, got `{0}`")]
    BadAdvertiseAddr(String),
    #[error("cannot resolve manager address `{0}`")]
    BadManagerAddr(String),
    #[error("cannot reach {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("--force-new-cluster needs a manager's state on this node")]
    NoManagerState,
    #[error("gossip is not running on this node: {0}")]
    NoPlane(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("this node is still changing its role in the swarm (joining, or being promoted); try again in a few seconds")]
    Changing,
    /// Its outermost context is the message; the rest of the chain is the
    /// `source`, printed once by a chain printer.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl From<anyhow::Error> for AgentError {
    fn from(e: anyhow::Error) -> AgentError {
        AgentError::Failed(e.into())
    }
}

impl AgentError {
    /// What kind of failure, as for a manager's errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::NotInSwarm
            | AgentError::NotAManager
            | AgentError::AlreadyMember
            | AgentError::NotMember
            | AgentError::ManagerMustForce
            | AgentError::NotLocked
            | AgentError::BadAdvertiseAddr(_)
            | AgentError::BadManagerAddr(_)
            | AgentError::NoManagerState
            | AgentError::NoPlane(_) => ErrorCode::Invalid,
            AgentError::Secret(SecretError::WrongKey) => ErrorCode::Permission,
            AgentError::Secret(SecretError::Locked) => ErrorCode::Invalid,
            AgentError::Secret(SecretError::Io { .. } | SecretError::Damaged(_)) => {
                ErrorCode::Internal
            }
            AgentError::Unreachable { .. } | AgentError::ShuttingDown | AgentError::Changing => {
                ErrorCode::Unavailable
            }
            AgentError::Ca(CaError::InvalidJoinToken(_) | CaError::InvalidUnlockKey(_)) => {
                ErrorCode::Invalid
            }
            AgentError::Ca(CaError::JoinTokenRejected | CaError::DigestMismatch { .. }) => {
                ErrorCode::Permission
            }
            AgentError::Ca(_) => ErrorCode::Unavailable,
            AgentError::Manager(e) => e.code(),
            AgentError::Failed(_) => ErrorCode::Internal,
        }
    }
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        status(e.code(), e.chain().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cause once: `x: y`, never `x: y: y`.
    #[test]
    fn a_failure_prints_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let failed = AgentError::from(anyhow::Error::from(io).context("reading the identity"));
        let shown = format!("{:#}", anyhow::Error::from(failed));
        assert_eq!(shown, "reading the identity: entity not found");
        let lock = super::super::super::lock::LockError::Io {
            path: "/run/shoal/shoal.lock".into(),
            cause: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let shown = format!("{:#}", anyhow::Error::from(lock));
        assert_eq!(shown.matches("permission denied").count(), 1, "{shown}");
        let netns = crate::netns::NetnsError::Remove {
            path: "/run/netns/x".into(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let shown = format!("{:#}", anyhow::Error::from(netns));
        assert_eq!(shown.matches("entity not found").count(), 1, "{shown}");
    }
}
