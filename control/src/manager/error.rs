//! Why a manager refused or failed a request. Every error has an
//! [`ErrorCode`]; the code, not the message, decides what a caller does
//! (retry on the leader, give up for lack of quorum, leave the swarm). The
//! code travels with the gRPC status (see `crate::proto::status`), so a
//! client gets it back as [`ManagerError::Remote`].

use serde::{Deserialize, Serialize};

use super::broker::BrokerError;
use super::node_rules::NodeRuleError;
use crate::ca::CaError;
use crate::objects::{LookupError, NetworkCreateError, PayloadError};
use crate::orchestrator::{AddressError, AdmissionError};

/// What kind of failure, for the caller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The object named does not exist.
    NotFound,
    /// The request lost a race, or collides with what exists (a taken name
    /// or port): read again and retry, or change the request.
    Conflict,
    /// Too few managers are reachable to commit anything.
    NoQuorum,
    /// This manager is not (or no longer) the leader: retry on the leader.
    NotLeader,
    /// The caller may not make this request.
    Permission,
    /// The caller's node is no longer in the swarm: its certificate is
    /// refused everywhere, and the node should leave.
    Removed,
    /// The request is malformed, or the swarm's rules refuse it as asked.
    Invalid,
    /// Something the request needs did not answer in time: retry later.
    Unavailable,
    /// A bug or a damaged store: nothing the caller can fix.
    Internal,
}

impl ErrorCode {
    /// Every code, for round-trip tests.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::NoQuorum,
        ErrorCode::NotLeader,
        ErrorCode::Permission,
        ErrorCode::Removed,
        ErrorCode::Invalid,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoQuorum => "no_quorum",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Permission => "permission",
            ErrorCode::Removed => "removed",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Why a caller is refused (see [`super::authorize`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("node {node} was removed from the swarm")]
    Removed { node: String },
    #[error("worker certificates cannot call manager APIs")]
    WorkerCertificate,
    #[error("node {node} is not a manager in this swarm any more: its certificate no longer gives manager rights")]
    NoLongerManager { node: String },
    #[error("a node may only heartbeat for itself")]
    HeartbeatForOther,
}

/// The error of every manager request.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("no such task or service: {0}")]
    NoLogTarget(String),
    #[error(transparent)]
    NodeRule(#[from] NodeRuleError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    NetworkCreate(#[from] NetworkCreateError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    LogsBusy(#[from] BrokerError),
    #[error("network {network} is in use by service {services}; remove the service or its --network first")]
    NetworkInUse { network: String, services: String },
    #[error("network {network} still has {tasks} task(s) stopping on it; retry in a few seconds")]
    NetworkDraining { network: String, tasks: usize },
    /// Swarm's refusal, naming the service that publishes a port.
    #[error("ingress network cannot be removed because service {0} depends on it")]
    IngressInUse(String),
    #[error("scale can only be used with replicated mode: {0} is global")]
    ScaleGlobal(String),
    #[error("service {0} has no previous spec to roll back to")]
    NoPreviousSpec(String),
    #[error("a service's mode (replicated or global) cannot change; remove and create it again")]
    ModeChange,
    #[error("service {service}: {replicas} replicas is over this swarm's cap of {cap} per service; raise it with `shoal swarm update --max-replicas N` if the cluster can run that many")]
    OverReplicaCap {
        service: String,
        replicas: u64,
        cap: u64,
    },
    #[error("key {0} doesn't exist in node's labels")]
    NoSuchLabel(String),
    #[error("no unlock key is set: turn autolock on with `shoal swarm update --autolock=true`")]
    NoUnlockKey,
    #[error("node {0} is not a manager")]
    NotAManager(String),
    #[error("the swarm has no cluster object yet")]
    NoCluster,
    #[error("{kind} {name} changed concurrently; retry the command")]
    Changed { kind: &'static str, name: String },
    #[error(
        "service {name} changed since it was read (version {read}, now {now}); retry the command"
    )]
    Stale { name: String, read: u64, now: u64 },
    #[error("other {kind}s were being changed at the same time; retry the command")]
    Contended { kind: &'static str },
    #[error("{}", no_quorum_message(*reachable, *managers))]
    NoQuorum { reachable: usize, managers: usize },
    #[error("leadership moved while writing; retry the command")]
    LeaderMoved,
    #[error("the Raft group refused the change: {0}")]
    Membership(String),
    #[error("the store refused the write: {0}")]
    Rejected(String),
    #[error("the store failed: {0}")]
    Store(String),
    #[error("node {node} is not known to this manager (yet): ask the leader")]
    NotKnownHere { node: String },
    #[error("cannot reach the manager at {manager}: {detail}")]
    Unreachable { manager: String, detail: String },
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    #[error("the heartbeat answer for node {node} ({tasks} tasks, {bytes} bytes) is over the {limit}-byte limit: spread its services over more nodes or lower their replicas")]
    HeartbeatTooLarge {
        node: String,
        tasks: usize,
        bytes: usize,
        limit: usize,
    },
}

impl ManagerError {
    /// What the caller should do about it.
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            ManagerError::Lookup(LookupError::NotFound { .. }) => C::NotFound,
            ManagerError::Lookup(LookupError::Ambiguous { .. }) => C::Invalid,
            ManagerError::NoLogTarget(_) => C::NotFound,
            ManagerError::NodeRule(_) => C::Invalid,
            ManagerError::Admission(e) => match e {
                AdmissionError::NameTaken(_) | AdmissionError::PortTaken { .. } => C::Conflict,
                AdmissionError::Network(LookupError::NotFound { .. }) => C::NotFound,
                AdmissionError::Network(LookupError::Ambiguous { .. })
                | AdmissionError::NoFreePort(_)
                | AdmissionError::PortReserved(_)
                | AdmissionError::IngressNetwork(_)
                | AdmissionError::NoIngress
                | AdmissionError::Spec(_) => C::Invalid,
            },
            ManagerError::NetworkCreate(NetworkCreateError::NameTaken(_)) => C::Conflict,
            ManagerError::NetworkCreate(_) => C::Invalid,
            ManagerError::Address(AddressError::UnknownNetwork(_)) => C::NotFound,
            ManagerError::Address(AddressError::Exhausted { .. }) => C::Invalid,
            ManagerError::Payload(PayloadError::NameTaken(..)) => C::Conflict,
            ManagerError::Payload(_) => C::Invalid,
            ManagerError::Ca(CaError::JoinTokenRejected) => C::Permission,
            ManagerError::Ca(CaError::InvalidJoinToken(_) | CaError::InvalidCsr(_)) => C::Invalid,
            ManagerError::Ca(_) => C::Internal,
            ManagerError::Denied(Denied::Removed { .. }) => C::Removed,
            ManagerError::Denied(
                Denied::WorkerCertificate
                | Denied::NoLongerManager { .. }
                | Denied::HeartbeatForOther,
            ) => C::Permission,
            ManagerError::LogsBusy(_) => C::Unavailable,
            ManagerError::NetworkInUse { .. }
            | ManagerError::NetworkDraining { .. }
            | ManagerError::IngressInUse(_)
            | ManagerError::ScaleGlobal(_)
            | ManagerError::NoPreviousSpec(_)
            | ManagerError::ModeChange
            | ManagerError::OverReplicaCap { .. }
            | ManagerError::NoSuchLabel(_)
            | ManagerError::NoUnlockKey
            | ManagerError::NotAManager(_) => C::Invalid,
            ManagerError::NoCluster => C::Unavailable,
            ManagerError::Changed { .. }
            | ManagerError::Stale { .. }
            | ManagerError::Contended { .. } => C::Conflict,
            ManagerError::NoQuorum { .. } => C::NoQuorum,
            ManagerError::LeaderMoved | ManagerError::NotKnownHere { .. } => C::NotLeader,
            ManagerError::Membership(_) => C::Unavailable,
            ManagerError::Rejected(_) => C::Invalid,
            ManagerError::Store(_) => C::Internal,
            ManagerError::HeartbeatTooLarge { .. } => C::Unavailable,
            ManagerError::Unreachable { .. } => C::Unavailable,
            ManagerError::Remote { code, .. } => *code,
        }
    }

    /// An unreadable object or a failed encoding in the store.
    pub fn store(e: impl std::fmt::Display) -> ManagerError {
        ManagerError::Store(e.to_string())
    }
}

/// The error every write gets when managers lack a majority.
pub fn no_quorum_message(reachable: usize, managers: usize) -> String {
    let needed = managers / 2 + 1;
    format!(
        "no quorum: {reachable} of {managers} managers reachable; writes are refused until {needed} are. \
         If the others are gone for good, run `shoal swarm init --force-new-cluster` on a surviving manager"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_message_says_how_many_are_needed() {
        let m = ManagerError::NoQuorum {
            reachable: 1,
            managers: 3,
        }
        .to_string();
        assert!(m.starts_with("no quorum: 1 of 3 managers reachable"), "{m}");
        assert!(m.contains("until 2 are"));
        assert!(no_quorum_message(2, 5).contains("until 3 are"));
    }

    #[test]
    fn codes_have_names_that_read_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn a_removed_node_is_told_so_by_its_code() {
        let e = ManagerError::from(Denied::Removed { node: "n1".into() });
        assert_eq!(e.code(), ErrorCode::Removed);
        assert_eq!(e.to_string(), "node n1 was removed from the swarm");
        assert_eq!(
            ManagerError::from(Denied::WorkerCertificate).code(),
            ErrorCode::Permission
        );
    }
}
