//! Who may call what: decided on every call from the caller's certificate
//! AND its node in the store, so a removed node's certificate is refused
//! everywhere at once, and a demoted manager's certificate loses manager
//! rights at once (before it expires or is renewed).

use super::{Denied, ManagerError};
use crate::api::ApiRequest;
use crate::objects::{Node, Role};
use crate::store::Objects;

/// Who makes a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The CLI on this node's own Unix socket (root only, like dockerd's):
    /// it has this manager's rights.
    Local,
    /// A node, as its verified certificate names it.
    Node { node_id: String, role: Role },
}

/// What a caller asks.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    /// `Control.Call`.
    Control(&'a ApiRequest),
    /// `Dispatcher.Heartbeat` for `node` (the caller itself, or a node whose
    /// heartbeat a manager relays to the leader).
    Heartbeat { node: &'a str },
    /// `Ca.Renew`.
    Renew,
}

/// Allows `call` from `caller`, or says why not.
pub fn authorize(caller: &Caller, call: Call<'_>, objects: &Objects) -> Result<(), ManagerError> {
    let Caller::Node { node_id, role } = caller else {
        return Ok(());
    };
    let stored = objects
        .one::<Node>(node_id)
        .map_err(ManagerError::store)?
        .map(|v| v.value)
        .ok_or_else(|| Denied::Removed {
            node: node_id.clone(),
        })?;
    let manager = || -> Result<(), ManagerError> {
        if *role != Role::Manager {
            return Err(Denied::WorkerCertificate.into());
        }
        if stored.role != Role::Manager {
            return Err(Denied::NoLongerManager {
                node: node_id.clone(),
            }
            .into());
        }
        Ok(())
    };
    match call {
        Call::Control(request) if request.access().workers_allowed() => Ok(()),
        Call::Control(_) => manager(),
        Call::Heartbeat { node } if node == node_id => Ok(()),
        // A manager relays heartbeats that reached it to the leader.
        Call::Heartbeat { .. } => manager().map_err(|_| Denied::HeartbeatForOther.into()),
        Call::Renew => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::ErrorCode;
    use crate::objects::NodeState;
    use crate::store::objects::Changes;
    use crate::store::Command;

    fn node(id: &str, role: Role) -> Node {
        Node {
            id: id.into(),
            hostname: id.into(),
            addr: "198.18.0.1".into(),
            listen_port: 0,
            role,
            availability: Default::default(),
            labels: Default::default(),
            state: NodeState::Ready,
            raft_id: None,
            resources: Default::default(),
            created_at: 0,
            updated_at: 0,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        }
    }

    fn store(nodes: &[Node]) -> Objects {
        let mut objects = Objects::default();
        let mut changes = Changes::default();
        for (i, n) in nodes.iter().enumerate() {
            let put = Command::put(n, None).unwrap();
            assert!(changes.stage(&objects, &put, i as u64 + 1).is_ok());
        }
        objects.apply(&changes, Some(nodes.len() as u64));
        objects
    }

    fn caller(id: &str, role: Role) -> Caller {
        Caller::Node {
            node_id: id.into(),
            role,
        }
    }

    fn code(result: Result<(), ManagerError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code())
    }

    #[test]
    fn a_removed_node_is_refused_everywhere() {
        let objects = store(&[node("m1", Role::Manager)]);
        let gone = caller("w9", Role::Worker);
        let info = ApiRequest::Info;
        for call in [
            Call::Control(&info),
            Call::Heartbeat { node: "w9" },
            Call::Renew,
        ] {
            assert_eq!(
                code(authorize(&gone, call, &objects)),
                Some(ErrorCode::Removed)
            );
        }
        // Even with a manager certificate.
        let old_manager = caller("m9", Role::Manager);
        assert_eq!(
            code(authorize(
                &old_manager,
                Call::Control(&ApiRequest::NodeList),
                &objects
            )),
            Some(ErrorCode::Removed)
        );
    }

    #[test]
    fn a_demoted_managers_certificate_loses_manager_rights_at_once() {
        let objects = store(&[node("m1", Role::Manager), node("m2", Role::Worker)]);
        let demoted = caller("m2", Role::Manager);
        let refused = authorize(&demoted, Call::Control(&ApiRequest::NodeList), &objects);
        assert!(matches!(
            refused,
            Err(ManagerError::Denied(Denied::NoLongerManager { .. }))
        ));
        // What workers may do, it still may.
        assert!(authorize(&demoted, Call::Control(&ApiRequest::Info), &objects).is_ok());
        assert!(authorize(&demoted, Call::Heartbeat { node: "m2" }, &objects).is_ok());
        assert!(authorize(&demoted, Call::Renew, &objects).is_ok());
        // And it relays no heartbeats.
        assert_eq!(
            code(authorize(
                &demoted,
                Call::Heartbeat { node: "m1" },
                &objects
            )),
            Some(ErrorCode::Permission)
        );
    }

    #[test]
    fn workers_call_worker_apis_for_themselves_only() {
        let objects = store(&[node("m1", Role::Manager), node("w1", Role::Worker)]);
        let worker = caller("w1", Role::Worker);
        assert!(authorize(&worker, Call::Control(&ApiRequest::Info), &objects).is_ok());
        assert!(matches!(
            authorize(&worker, Call::Control(&ApiRequest::NodeList), &objects),
            Err(ManagerError::Denied(Denied::WorkerCertificate))
        ));
        assert!(matches!(
            authorize(&worker, Call::Heartbeat { node: "m1" }, &objects),
            Err(ManagerError::Denied(Denied::HeartbeatForOther))
        ));
        // A promoted node keeps worker rights until its certificate says
        // manager.
        let promoted = store(&[node("m1", Role::Manager), node("w1", Role::Manager)]);
        assert!(authorize(&worker, Call::Control(&ApiRequest::NodeList), &promoted).is_err());
        let renewed = caller("w1", Role::Manager);
        assert!(authorize(&renewed, Call::Control(&ApiRequest::NodeList), &promoted).is_ok());
    }

    #[test]
    fn managers_relay_heartbeats_and_the_local_socket_may_do_anything() {
        let objects = store(&[node("m1", Role::Manager), node("w1", Role::Worker)]);
        let manager = caller("m1", Role::Manager);
        assert!(authorize(&manager, Call::Heartbeat { node: "w1" }, &objects).is_ok());
        let add = ApiRequest::AddManager {
            node_id: "w1".into(),
        };
        assert!(authorize(&Caller::Local, Call::Control(&add), &Objects::default()).is_ok());
    }
}
