//! Each request's refusals, and what the accepted ones change.

use super::*;
use crate::api::Access;
use crate::objects::{LookupError, NetworkCreateError, PortConfig, Protocol, ServiceMode};
use crate::orchestrator::AdmissionError;

fn code<T: std::fmt::Debug>(result: Result<T, ManagerError>) -> ErrorCode {
    result.expect_err("refused").code()
}

fn set_role(node: &str, role: Role) -> ApiRequest {
    ApiRequest::NodeSetRole {
        node: node.into(),
        role,
    }
}

#[tokio::test]
async fn node_changes_follow_swarms_rules() {
    let swarm = Swarm::new(3, 2);
    let m = swarm.manager(1);
    // Unknown, ambiguous and `self` names.
    let missing = local(
        &m,
        ApiRequest::NodeInspect {
            node: "nope".into(),
        },
    )
    .await;
    assert!(matches!(
        missing,
        Err(ManagerError::Lookup(LookupError::NotFound { .. }))
    ));
    assert_eq!(
        code(
            local(
                &m,
                ApiRequest::NodeInspect {
                    node: "node".into()
                }
            )
            .await
        ),
        ErrorCode::Invalid,
        "node001 and node002 share the prefix"
    );
    let me = local(
        &m,
        ApiRequest::NodeInspect {
            node: "self".into(),
        },
    )
    .await;
    assert!(matches!(me, Ok(ApiResponse::Node { node }) if node.id == "mgr1"));
    // A manager must be demoted before removal; a live worker needs --force.
    let rm = |node: &str, force| ApiRequest::NodeRemove {
        node: node.into(),
        force,
    };
    assert!(matches!(
        local(&m, rm("m2", true)).await,
        Err(ManagerError::NodeRule(NodeRuleError::IsManager(_)))
    ));
    assert!(matches!(
        local(&m, rm("h1", false)).await,
        Err(ManagerError::NodeRule(NodeRuleError::NotDown(_)))
    ));
    local(&m, rm("h1", true)).await.unwrap();
    assert!(swarm.node("node001").is_none());
    // Demoting needs the others reachable (this manager reaches none).
    assert!(matches!(
        local(&m, set_role("m2", Role::Worker)).await,
        Err(ManagerError::NodeRule(
            NodeRuleError::WouldLoseQuorum { .. }
        ))
    ));
    m.reach().mark(&manager_identity(2).api_addr());
    m.reach().mark(&manager_identity(3).api_addr());
    local(&m, set_role("m2", Role::Worker)).await.unwrap();
    let m2 = swarm.node("mgr2").unwrap();
    assert_eq!((m2.role, m2.raft_id), (Role::Worker, None));
    // Promoting twice says so.
    let again = local(&m, set_role("h2", Role::Manager)).await.unwrap();
    assert!(swarm.node("node002").unwrap().raft_id.is_some());
    assert!(matches!(again, ApiResponse::Done { .. }));
    let twice = local(&m, set_role("h2", Role::Manager)).await.unwrap();
    assert_eq!(
        twice,
        ApiResponse::Done {
            message: "Node node002 is already a manager.".into()
        }
    );
}

#[tokio::test]
async fn the_last_manager_stays_and_labels_must_exist_to_go() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    assert!(matches!(
        local(&m, set_role("m1", Role::Worker)).await,
        Err(ManagerError::NodeRule(NodeRuleError::LastManager(_)))
    ));
    let update = |label_rm: Vec<String>| ApiRequest::NodeUpdate {
        node: "h1".into(),
        availability: Some(crate::objects::Availability::Drain),
        label_add: vec![("zone".into(), "a".into())],
        label_rm,
    };
    local(&m, update(vec![])).await.unwrap();
    let h1 = swarm.node("node001").unwrap();
    assert_eq!(h1.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(h1.availability, crate::objects::Availability::Drain);
    let refused = local(&m, update(vec!["rack".into()])).await;
    assert!(matches!(refused, Err(ManagerError::NoSuchLabel(k)) if k == "rack"));
}

#[tokio::test]
async fn network_requests_refuse_taken_names_and_networks_in_use() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let web = create_network(&m, "web").await;
    // The ingress network came first.
    let names: Vec<String> = swarm.networks().into_iter().map(|n| n.name).collect();
    assert!(names.contains(&"ingress".to_string()), "{names:?}");
    assert!(
        web.spec.vni
            > swarm
                .networks()
                .iter()
                .find(|n| n.spec.ingress)
                .unwrap()
                .spec
                .vni
    );
    let again = local(
        &m,
        ApiRequest::NetworkCreate {
            name: "web".into(),
            driver: Some("bridge".into()),
            subnet: None,
            gateway: None,
            mtu: None,
            labels: Default::default(),
            ingress: false,
            attachable: false,
        },
    )
    .await;
    assert!(matches!(
        again,
        Err(ManagerError::NetworkCreate(
            NetworkCreateError::UnsupportedDriver(_)
        ))
    ));
    let twice = local(
        &m,
        ApiRequest::NetworkCreate {
            name: "web".into(),
            driver: None,
            subnet: None,
            gateway: None,
            mtu: None,
            labels: Default::default(),
            ingress: false,
            attachable: false,
        },
    )
    .await;
    assert_eq!(code(twice), ErrorCode::Conflict);
    create_service(&m, spec_on("a", "web", 1)).await.unwrap();
    let rm = local(
        &m,
        ApiRequest::NetworkRemove {
            name_or_id: "web".into(),
        },
    )
    .await;
    assert_eq!(
        rm.unwrap_err().to_string(),
        "network web is in use by service a; remove the service or its --network first"
    );
    let gone = local(
        &m,
        ApiRequest::NetworkRemove {
            name_or_id: "nope".into(),
        },
    )
    .await;
    assert_eq!(gone.unwrap_err().to_string(), "network nope not found");
}

#[tokio::test]
async fn the_ingress_network_is_removed_as_in_swarm_and_made_again_with_create_ingress() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    create_network(&m, "web").await;
    let rm_ingress = || {
        local(
            &m,
            ApiRequest::NetworkRemove {
                name_or_id: "ingress".into(),
            },
        )
    };
    // A service publishing a port keeps it.
    let mut published = spec_on("p", "web", 1);
    published.ports = vec![PortConfig {
        protocol: Protocol::Tcp,
        target: 80,
        published: 8080,
        mode: Default::default(),
    }];
    create_service(&m, published.clone()).await.unwrap();
    let rm = rm_ingress().await;
    assert!(
        matches!(rm, Err(ManagerError::IngressInUse(ref s)) if s == "p"),
        "{rm:?}"
    );
    assert_eq!(
        rm.unwrap_err().to_string(),
        "ingress network cannot be removed because service p depends on it"
    );
    // No service joins it by name.
    let joined = create_service(&m, spec_on("a", "ingress", 1)).await;
    assert!(
        matches!(
            joined,
            Err(ManagerError::Admission(AdmissionError::IngressNetwork(ref n))) if n == "ingress"
        ),
        "{joined:?}"
    );
    // A service without published ports does not keep it.
    create_service(&m, spec_on("quiet", "web", 1))
        .await
        .unwrap();
    local(
        &m,
        ApiRequest::ServiceRemove {
            service: "p".into(),
        },
    )
    .await
    .unwrap();
    rm_ingress().await.unwrap();
    assert!(!swarm.networks().iter().any(|n| n.spec.ingress));
    // Neither the leader's passes nor another network create make it again.
    m.orchestrate_once().await.unwrap();
    create_network(&m, "web2").await;
    assert!(!swarm.networks().iter().any(|n| n.spec.ingress));
    let refused = create_service(&m, published.clone()).await;
    assert!(
        matches!(
            refused,
            Err(ManagerError::Admission(AdmissionError::NoIngress))
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "service needs ingress network, but no ingress network is present"
    );
    // `network create --ingress` makes the next one; only one.
    let ingress_request = |name: &str, attachable| ApiRequest::NetworkCreate {
        name: name.into(),
        driver: Some("overlay".into()),
        subnet: None,
        gateway: None,
        mtu: None,
        labels: Default::default(),
        ingress: true,
        attachable,
    };
    let attachable = local(&m, ingress_request("mesh", true)).await;
    assert_eq!(
        attachable.unwrap_err().to_string(),
        "ingress network cannot be attachable"
    );
    let made = local(&m, ingress_request("mesh", false)).await.unwrap();
    let ApiResponse::Network { network } = made else {
        panic!("{made:?}")
    };
    assert!(network.ingress);
    let second = local(&m, ingress_request("mesh2", false)).await;
    assert_eq!(
        second.unwrap_err().to_string(),
        format!("ingress network ({}) is already present", network.id)
    );
    create_service(&m, published).await.unwrap();
    let joined = create_service(&m, spec_on("b", "mesh", 1)).await;
    assert!(
        matches!(
            joined,
            Err(ManagerError::Admission(AdmissionError::IngressNetwork(ref n))) if n == "mesh"
        ),
        "{joined:?}"
    );
}

#[tokio::test]
async fn a_network_with_stopping_tasks_waits() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    create_network(&m, "web").await;
    create_service(&m, spec_on("a", "web", 1)).await.unwrap();
    m.orchestrate_once().await.unwrap();
    local(
        &m,
        ApiRequest::ServiceRemove {
            service: "a".into(),
        },
    )
    .await
    .unwrap();
    // The task is still on the network until the orchestrator stops it.
    let rm = local(
        &m,
        ApiRequest::NetworkRemove {
            name_or_id: "web".into(),
        },
    )
    .await;
    assert!(
        matches!(rm, Err(ManagerError::NetworkDraining { tasks: 1, .. })),
        "{rm:?}"
    );
}

#[tokio::test]
async fn service_requests_refuse_what_swarm_refuses() {
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    create_network(&m, "web").await;
    let mut a = spec_on("a", "web", 2);
    a.ports = vec![PortConfig {
        protocol: Protocol::Tcp,
        target: 80,
        published: 8080,
        mode: Default::default(),
    }];
    create_service(&m, a.clone()).await.unwrap();
    // A taken name, a taken port, a missing network, a bad spec.
    let mut b = a.clone();
    assert!(matches!(
        create_service(&m, b.clone()).await,
        Err(ManagerError::Admission(AdmissionError::NameTaken(_)))
    ));
    b.name = "b".into();
    let port = create_service(&m, b.clone()).await;
    assert_eq!(
        port.unwrap_err().to_string(),
        "port 8080/tcp is already published by service a"
    );
    b.ports.clear();
    b.networks = vec!["nope".into()];
    assert_eq!(
        code(create_service(&m, b.clone()).await),
        ErrorCode::NotFound
    );
    b.networks.clear();
    b.task.command.clear();
    assert_eq!(code(create_service(&m, b).await), ErrorCode::Invalid);
    // Stale updates and mode changes.
    let current = swarm.services().remove(0);
    let mut global = current.spec.clone();
    global.mode = ServiceMode::Global;
    let update = |spec: ServiceSpec, version| ApiRequest::ServiceUpdate {
        service: "a".into(),
        spec: Box::new(spec),
        version,
        force: false,
    };
    assert!(matches!(
        local(&m, update(current.spec.clone(), Some(7))).await,
        Err(ManagerError::Stale {
            read: 7,
            now: 1,
            ..
        })
    ));
    assert!(matches!(
        local(&m, update(global, Some(1))).await,
        Err(ManagerError::ModeChange)
    ));
    // Nothing to roll back to yet; scaling works on replicated services.
    assert!(matches!(
        local(
            &m,
            ApiRequest::ServiceRollback {
                service: "a".into()
            }
        )
        .await,
        Err(ManagerError::NoPreviousSpec(_))
    ));
    local(
        &m,
        ApiRequest::ServiceScale {
            service: "a".into(),
            replicas: 5,
        },
    )
    .await
    .unwrap();
    assert_eq!(swarm.services()[0].spec.replicas(), Some(5));
    let rm = local(
        &m,
        ApiRequest::ServiceRemove {
            service: "zz".into(),
        },
    )
    .await;
    assert_eq!(rm.unwrap_err().to_string(), "service zz not found");
}

#[tokio::test]
async fn global_services_do_not_scale_and_swarm_settings_need_autolock_for_a_key() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let mut g = spec_on("g", "", 0);
    g.mode = ServiceMode::Global;
    create_service(&m, g).await.unwrap();
    let scale = local(
        &m,
        ApiRequest::ServiceScale {
            service: "g".into(),
            replicas: 2,
        },
    )
    .await;
    assert!(matches!(scale, Err(ManagerError::ScaleGlobal(_))));
    assert!(matches!(
        local(&m, ApiRequest::UnlockKey).await,
        Err(ManagerError::NoUnlockKey)
    ));
    local(
        &m,
        ApiRequest::SwarmUpdate {
            autolock: Some(true),
            cert_expiry_secs: None,
            rotate_gossip_key: false,
        },
    )
    .await
    .unwrap();
    let key = local(&m, ApiRequest::UnlockKey).await.unwrap();
    assert!(matches!(key, ApiResponse::Token { token, .. } if token.starts_with("SWMKEY-1-")));
    // Rotating a join token changes it; reading it does not.
    let token = |rotate| ApiRequest::JoinToken {
        role: Role::Worker,
        rotate,
    };
    let first = local(&m, token(false)).await.unwrap();
    assert_eq!(local(&m, token(false)).await.unwrap(), first);
    let rotated = local(&m, token(true)).await.unwrap();
    assert_ne!(rotated, first);
}

#[tokio::test]
async fn callers_are_authorized_from_the_store() {
    let swarm = Swarm::new(2, 1);
    let m = swarm.manager(1);
    let worker = Caller::Node {
        node_id: "node001".into(),
        role: Role::Worker,
    };
    let refused = m.handle(&worker, ApiRequest::NodeList).await;
    assert_eq!(code(refused), ErrorCode::Permission);
    assert!(m.handle(&worker, ApiRequest::Info).await.is_ok());
    // A removed node, whatever its certificate says.
    let removed = Caller::Node {
        node_id: "gone".into(),
        role: Role::Manager,
    };
    assert_eq!(
        code(m.handle(&removed, ApiRequest::Info).await),
        ErrorCode::Removed
    );
    let hb = Heartbeat {
        node_id: "gone".into(),
        resources: None,
        tasks: vec![],
        logs: vec![],
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    };
    assert_eq!(code(m.heartbeat(&removed, hb).await), ErrorCode::Removed);
    let renew = crate::api::RenewRequest {
        csr_pem: String::new(),
    };
    assert_eq!(code(m.renew(&removed, renew)), ErrorCode::Removed);
    // A follower's store may lag: it sends a caller it does not know to
    // the leader instead of telling it it was removed.
    let follower = swarm.manager(2);
    let unknown = follower.handle(&removed, ApiRequest::Info).await;
    assert_eq!(code(unknown), ErrorCode::NotLeader);
    let hb = Heartbeat {
        node_id: "gone".into(),
        resources: None,
        tasks: vec![],
        logs: vec![],
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    };
    assert_eq!(
        code(follower.heartbeat(&removed, hb).await),
        ErrorCode::NotLeader
    );
    // A manager demoted a moment ago loses manager rights at once.
    let m2 = Caller::Node {
        node_id: "mgr2".into(),
        role: Role::Manager,
    };
    assert!(m.handle(&m2, ApiRequest::NodeList).await.is_ok());
    let mut demoted = swarm.node("mgr2").unwrap();
    demoted.role = Role::Worker;
    swarm.store.apply(&Command::put(&demoted, None).unwrap());
    assert_eq!(
        code(m.handle(&m2, ApiRequest::NodeList).await),
        ErrorCode::Permission
    );
}

#[tokio::test(start_paused = true)]
async fn without_quorum_writes_fail_with_the_quorum_error_and_reads_still_work() {
    let swarm = Swarm::new(3, 1);
    let m = swarm.manager(1);
    swarm.store.fail_writes(Some(WriteFailure::NoQuorum));
    let write = local(&m, set_role("h1", Role::Manager)).await;
    let err = write.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoQuorum);
    assert!(
        err.to_string()
            .starts_with("no quorum: 1 of 3 managers reachable"),
        "{err}"
    );
    assert!(local(&m, ApiRequest::NodeList).await.is_ok());
    // A follower with no leader waits a bounded time, then says the same.
    swarm.store.set_leader(None);
    let m2 = swarm.manager(2);
    let started = tokio::time::Instant::now();
    let write = local(
        &m2,
        ApiRequest::ServiceRemove {
            service: "a".into(),
        },
    )
    .await;
    assert_eq!(code(write), ErrorCode::NoQuorum);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test]
async fn a_follower_forwards_writes_to_the_leader_and_reads_itself() {
    let swarm = Swarm::new(2, 1);
    let leader = swarm.manager(1);
    let follower = swarm.manager_linked(2, Some(leader.clone()));
    create_network(&follower, "web").await;
    assert_eq!(swarm.networks().len(), 2);
    let info = local(&follower, ApiRequest::Info).await.unwrap();
    assert!(matches!(info, ApiResponse::Info(i) if i.node_id == "mgr2"
        && i.leader == Some(manager_identity(1).api_addr())));
}

#[test]
fn every_request_has_one_access_rule() {
    let reads = [
        ApiRequest::NodeList,
        ApiRequest::ServiceList,
        ApiRequest::JoinToken {
            role: Role::Worker,
            rotate: false,
        },
    ];
    for r in &reads {
        assert_eq!(r.access(), Access::Read);
        assert!(!r.is_write() && !r.needs_leader() && !r.workers_allowed());
    }
    let rotate = ApiRequest::JoinToken {
        role: Role::Worker,
        rotate: true,
    };
    assert!(rotate.is_write() && rotate.needs_leader());
    assert!(ApiRequest::Info.workers_allowed());
}

/// Each manager is reached on the `--listen-port` it recorded when it
/// joined, not on the port of the manager asking; one recorded before the
/// port was kept (0) is taken to share this manager's.
#[tokio::test]
async fn managers_are_reached_on_their_own_listen_port() {
    let swarm = Swarm::new(3, 0);
    let stored = swarm.store.read().one::<Node>("mgr2").unwrap().unwrap();
    let moved = Node {
        listen_port: 2402,
        ..stored.value
    };
    swarm
        .store
        .apply(&Command::put(&moved, Some(stored.version)).unwrap());
    let mut addrs = swarm.manager(1).manager_addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [
            "198.18.0.101:2377",
            "198.18.0.102:2402",
            "198.18.0.103:2377"
        ]
    );
}
