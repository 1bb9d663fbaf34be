//! Who may call the Raft methods of a manager: only the manager a message
//! says it comes from. The caller's certificate (verified by TLS against the
//! cluster's root) must name a node that the store holds as a manager with
//! the Raft id the message claims (leader id of an append or a snapshot,
//! candidate id of a vote), and that Raft id must be a voter of the current
//! membership. Anything else is refused before openraft sees it, so a
//! refused call never changes this member's term or log.
//!
//! One exception, for bootstrap: a member that belongs to no membership yet
//! (a manager just added, waiting for its first entries) has no store to
//! check against; it accepts a manager certificate of this cluster.

use crate::error_chain::ErrorChain;
use std::collections::BTreeSet;

use rustls::pki_types::CertificateDer;
use tonic::Status;

use crate::ca::{authorize, PeerIdentity, Required};
use crate::objects::{Node, Role};
use crate::store::{kind, Objects};

/// How callers reach this member's Raft service, which decides what can be
/// checked about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Mutual TLS: every caller is checked as the module docs say.
    MutualTls,
    /// Plain HTTP/2 with no certificates: nothing can be checked. Tests only.
    Plaintext,
}

/// Which Raft method is called, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RaftCall {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftCall {
    fn claimed(self) -> &'static str {
        match self {
            RaftCall::Vote => "candidate",
            RaftCall::AppendEntries | RaftCall::InstallSnapshot => "leader",
        }
    }
}

/// Accepts a call of `call` claiming to come from Raft member `claimed`,
/// made with the certificate chain `peer_certs`, when `objects` is this
/// member's store and `voters` its current membership's voters.
#[cfg(test)]
pub(crate) fn check_raft_caller(
    peer_certs: Option<&[CertificateDer<'_>]>,
    call: RaftCall,
    claimed: u64,
    objects: &Objects,
    voters: &BTreeSet<u64>,
) -> Result<(), Status> {
    let caller = check_certificate(peer_certs)?;
    check_claim(&caller, call, claimed, objects, voters)
}

/// The first check, before a byte of the message is decoded: a manager
/// certificate of this cluster (TLS verified the chain).
pub(crate) fn check_certificate(
    peer_certs: Option<&[CertificateDer<'_>]>,
) -> Result<PeerIdentity, Status> {
    authorize(peer_certs, Required::Manager)
}

/// The second check, once the message names its sender: `caller` is the
/// Raft member `claimed`, a manager and a voter (see the module docs).
pub(crate) fn check_claim(
    caller: &PeerIdentity,
    call: RaftCall,
    claimed: u64,
    objects: &Objects,
    voters: &BTreeSet<u64>,
) -> Result<(), Status> {
    if voters.is_empty() {
        // Bootstrap: see the module docs.
        return Ok(());
    }
    let node = objects
        .get_as::<Node>(kind::NODE, &caller.node_id)
        .map_err(|e| Status::internal(e.chain().to_string()))?
        .map(|v| v.value)
        .ok_or_else(|| {
            Status::permission_denied(format!(
                "node {} is not in this swarm (removed?): its certificate cannot call Raft",
                caller.node_id
            ))
        })?;
    if node.role != Role::Manager {
        return Err(Status::permission_denied(format!(
            "node {} is a worker now: a manager certificate issued before its demotion \
             cannot call Raft",
            node.id
        )));
    }
    if node.raft_id != Some(claimed) {
        return Err(Status::permission_denied(format!(
            "{call:?} names Raft member {claimed} as its {}, but the caller is node {} \
             (Raft member {})",
            call.claimed(),
            node.id,
            node.raft_id
                .map_or_else(|| "none".to_string(), |id| id.to_string())
        )));
    }
    if !voters.contains(&claimed) {
        return Err(Status::permission_denied(format!(
            "node {} (Raft member {claimed}) is not a voter of the current membership",
            node.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;
    use crate::ca::RootCa;
    use crate::store::Versioned;

    const YEAR: Duration = Duration::from_secs(365 * 86400);

    fn cert(ca: &RootCa, id: &str, role: Role) -> Vec<CertificateDer<'static>> {
        let (_, pem) = ca.issue(id, role, "c1", YEAR).unwrap();
        vec![rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap()]
    }

    fn node(id: &str, role: Role, raft_id: Option<u64>) -> Node {
        Node {
            id: id.into(),
            hostname: id.into(),
            addr: "198.18.0.1".into(),
            listen_port: 0,
            role,
            availability: Default::default(),
            labels: Default::default(),
            state: Default::default(),
            raft_id,
            resources: Default::default(),
            created_at: 0,
            updated_at: 0,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        }
    }

    fn store(nodes: &[Node]) -> Objects {
        let objects = nodes.iter().map(|n| {
            let value = serde_json::to_value(n).unwrap();
            (
                kind::NODE.to_string(),
                n.id.clone(),
                Versioned { version: 1, value },
            )
        });
        Objects::from_objects(objects, Some(1))
    }

    fn code(result: Result<(), Status>) -> Option<Code> {
        result.err().map(|s| s.code())
    }

    #[test]
    fn only_a_current_voter_naming_itself_gets_in() {
        let ca = RootCa::generate("c1").unwrap();
        let objects = store(&[
            node("m1", Role::Manager, Some(11)),
            node("m2", Role::Manager, Some(12)),
            node("w1", Role::Worker, None),
            node("d1", Role::Worker, None),
            node("learner", Role::Manager, Some(14)),
        ]);
        let voters = BTreeSet::from([11, 12]);
        let check = |certs: Option<&[CertificateDer<'_>]>, call, claimed| {
            check_raft_caller(certs, call, claimed, &objects, &voters)
        };
        let m2 = cert(&ca, "m2", Role::Manager);
        assert_eq!(code(check(Some(&m2), RaftCall::Vote, 12)), None);
        assert_eq!(code(check(Some(&m2), RaftCall::AppendEntries, 12)), None);
        // No certificate, a worker's, or a manager posing as another member.
        assert_eq!(
            code(check(None, RaftCall::AppendEntries, 12)),
            Some(Code::Unauthenticated)
        );
        let w1 = cert(&ca, "w1", Role::Worker);
        assert_eq!(
            code(check(Some(&w1), RaftCall::AppendEntries, 12)),
            Some(Code::PermissionDenied)
        );
        let err = check(Some(&m2), RaftCall::Vote, 11).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("candidate"), "{}", err.message());
        // A manager certificate kept from before a demotion.
        let d1 = cert(&ca, "d1", Role::Manager);
        let err = check(Some(&d1), RaftCall::InstallSnapshot, 11).unwrap_err();
        assert!(err.message().contains("worker now"), "{}", err.message());
        // A removed node's certificate.
        let gone = cert(&ca, "gone", Role::Manager);
        let err = check(Some(&gone), RaftCall::AppendEntries, 11).unwrap_err();
        assert!(
            err.message().contains("not in this swarm"),
            "{}",
            err.message()
        );
        // A manager that is not (yet) a voter.
        let learner = cert(&ca, "learner", Role::Manager);
        let err = check(Some(&learner), RaftCall::Vote, 14).unwrap_err();
        assert!(err.message().contains("not a voter"), "{}", err.message());
    }

    #[test]
    fn a_member_without_membership_takes_any_manager_certificate() {
        let ca = RootCa::generate("c1").unwrap();
        let empty = Objects::default();
        let none = BTreeSet::new();
        let m9 = cert(&ca, "m9", Role::Manager);
        assert!(check_raft_caller(Some(&m9), RaftCall::AppendEntries, 5, &empty, &none).is_ok());
        let w = cert(&ca, "w9", Role::Worker);
        assert!(check_raft_caller(Some(&w), RaftCall::AppendEntries, 5, &empty, &none).is_err());
        assert!(check_raft_caller(None, RaftCall::AppendEntries, 5, &empty, &none).is_err());
    }
}
