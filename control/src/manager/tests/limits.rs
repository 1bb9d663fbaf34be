//! Issue #12's manager-side bounds: ports nodes need cannot be published,
//! replica counts have a cap a user can raise, nodes leaving take the
//! gossip key with them, and what a node reports is bounded.

use super::*;
use crate::api::TaskReport;
use crate::objects::{
    GossipKeyring, NodeResources, PortConfig, Protocol, Task, TaskState, DEFAULT_MAX_REPLICAS,
    GOSSIP_KEYRING_ID,
};
use crate::orchestrator::AdmissionError;

fn publishing(name: &str, published: u16, protocol: Protocol) -> ServiceSpec {
    let mut spec = spec_on(name, "", 1);
    spec.ports = vec![PortConfig {
        protocol,
        target: 80,
        published,
        mode: Default::default(),
    }];
    spec
}

fn scale(service: &str, replicas: u64) -> ApiRequest {
    ApiRequest::ServiceScale {
        service: service.into(),
        replicas,
    }
}

fn keyring(swarm: &Swarm) -> GossipKeyring {
    swarm
        .store
        .read()
        .one::<GossipKeyring>(GOSSIP_KEYRING_ID)
        .unwrap()
        .map(|v| v.value)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_ports_nodes_need_are_refused_on_create_and_update() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    for (port, protocol) in [
        (2377, Protocol::Tcp),
        (7946, Protocol::Tcp),
        (7946, Protocol::Udp),
        (4789, Protocol::Udp),
    ] {
        let refused = create_service(&m, publishing("web", port, protocol)).await;
        let err = refused.expect_err("a reserved port was published");
        assert!(
            matches!(
                err,
                ManagerError::Admission(AdmissionError::PortReserved(_))
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::Invalid);
        assert!(err
            .to_string()
            .contains(&format!("port {port}/{protocol} is reserved")));
    }
    assert!(swarm.services().is_empty());
    // Other protocols of those ports are free, and an update cannot move a
    // service onto a reserved port either.
    create_service(&m, publishing("web", 4789, Protocol::Tcp))
        .await
        .unwrap();
    let update = ApiRequest::ServiceUpdate {
        service: "web".into(),
        spec: Box::new(publishing("web", 2377, Protocol::Tcp)),
        version: None,
        force: false,
    };
    assert!(matches!(
        local(&m, update).await,
        Err(ManagerError::Admission(AdmissionError::PortReserved(_)))
    ));
    assert_eq!(swarm.services()[0].spec.ports[0].published, 4789);
}

#[tokio::test]
async fn replicas_over_the_cap_are_refused_at_once_until_the_cap_is_raised() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    create_service(&m, spec_on("web", "", 1)).await.unwrap();
    let refused = local(&m, scale("web", 4_000_000_000)).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Invalid);
    assert_eq!(
        refused.to_string(),
        format!(
            "service web: 4000000000 replicas is over this swarm's cap of \
             {DEFAULT_MAX_REPLICAS} per service; raise it with `shoal swarm update \
             --max-replicas N` if the cluster can run that many"
        )
    );
    assert_eq!(swarm.services()[0].spec.replicas(), Some(1));
    // A create over the cap is refused the same way; the cap itself is not.
    assert!(matches!(
        create_service(&m, spec_on("big", "", DEFAULT_MAX_REPLICAS + 1)).await,
        Err(ManagerError::OverReplicaCap { .. })
    ));
    local(&m, scale("web", DEFAULT_MAX_REPLICAS)).await.unwrap();
    local(
        &m,
        ApiRequest::SetMaxReplicas {
            max_replicas: 20_000,
        },
    )
    .await
    .unwrap();
    local(&m, scale("web", 20_000)).await.unwrap();
    assert_eq!(swarm.services()[0].spec.replicas(), Some(20_000));
    // The orchestrator makes them in bounded passes (after a first one that
    // makes the ingress network).
    m.orchestrate_once().await.unwrap();
    let first = m.orchestrate_once().await.unwrap();
    assert_eq!(
        first.task_writes,
        crate::orchestrator::NEW_TASKS_PER_PASS,
        "{first:?}"
    );
}

#[tokio::test]
async fn removing_or_demoting_a_node_rotates_the_gossip_key() {
    let swarm = Swarm::new(3, 2);
    let m = swarm.manager(1);
    assert!(keyring(&swarm).keys.is_empty());
    local(
        &m,
        ApiRequest::NodeRemove {
            node: "node001".into(),
            force: true,
        },
    )
    .await
    .unwrap();
    assert!(swarm.node("node001").is_none());
    let after_rm = keyring(&swarm);
    assert_eq!(after_rm.keys.len(), 1, "{after_rm:?}");
    assert_eq!(after_rm.keys[0].id, 2);
    m.reach().mark(&manager_identity(2).api_addr());
    m.reach().mark(&manager_identity(3).api_addr());
    local(
        &m,
        ApiRequest::NodeSetRole {
            node: "m3".into(),
            role: Role::Worker,
        },
    )
    .await
    .unwrap();
    let after_demote = keyring(&swarm);
    assert_eq!(
        after_demote.keys.iter().map(|k| k.id).max(),
        Some(3),
        "{after_demote:?}"
    );
}

#[tokio::test]
async fn reported_resources_are_bounded_and_reports_count_only_for_the_nodes_tasks() {
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    let huge = NodeResources {
        nano_cpus: u64::MAX,
        memory_bytes: u64::MAX,
    };
    let beat = Heartbeat {
        node_id: "node001".into(),
        resources: Some(huge),
        tasks: vec![],
        logs: vec![],
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    };
    let worker1 = Caller::Node {
        node_id: "node001".into(),
        role: Role::Worker,
    };
    m.heartbeat(&worker1, beat.clone()).await.unwrap();
    let stored = swarm.node("node001").unwrap().resources;
    assert_eq!(stored.nano_cpus, MAX_NODE_CPUS * 1_000_000_000);
    assert_eq!(stored.memory_bytes, MAX_NODE_MEMORY_BYTES);

    // node001 reports a task of node002 as failed: not taken.
    create_service(&m, spec_on("web", "", 3)).await.unwrap();
    m.orchestrate_once().await.unwrap();
    m.orchestrate_once().await.unwrap();
    let tasks: Vec<Task> = m.store().read().all().unwrap();
    let other = tasks
        .iter()
        .find(|t| t.node_id.as_deref() == Some("node002"))
        .expect("a task on node002");
    let lie = TaskReport {
        task_id: other.id.clone(),
        state: TaskState::Failed,
        message: "forged".into(),
        err: Some("forged".into()),
        exit_code: Some(1),
        pid: None,
    };
    m.heartbeat(
        &worker1,
        Heartbeat {
            tasks: vec![lie],
            ..beat
        },
    )
    .await
    .unwrap();
    assert!(!m.dispatch().reports.contains_key(&other.id));
    m.orchestrate_once().await.unwrap();
    let after: Task = m.store().read().one(&other.id).unwrap().unwrap().value;
    assert_ne!(after.status.state, TaskState::Failed);
}

#[test]
fn sane_resources_pass_unchanged() {
    let fine = NodeResources {
        nano_cpus: 64_000_000_000,
        memory_bytes: 512 << 30,
    };
    assert_eq!(bounded_resources(fine), fine);
}

#[tokio::test]
async fn a_heartbeat_answer_over_the_limit_is_refused_naming_the_node() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    create_service(&m, spec_on("web", "", 4)).await.unwrap();
    m.orchestrate_once().await.unwrap();
    m.orchestrate_once().await.unwrap();
    let worker1 = Caller::Node {
        node_id: "node001".into(),
        role: Role::Worker,
    };
    let beat = Heartbeat {
        node_id: "node001".into(),
        resources: None,
        tasks: vec![],
        logs: vec![],
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    };
    let answer = m.heartbeat(&worker1, beat).await.unwrap();
    let tasks = answer.assignments.as_ref().map_or(0, Vec::len);
    assert!(tasks > 0);
    let size = serde_json::to_vec(&answer).unwrap().len();
    assert!(super::super::dispatcher::check_answer_size("node001", tasks, &answer, size).is_ok());
    let refused = super::super::dispatcher::check_answer_size("node001", tasks, &answer, size - 1)
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable);
    assert!(
        refused
            .to_string()
            .starts_with(&format!("the heartbeat answer for node node001 ({tasks} tasks, {size} bytes) is over the {}-byte limit", size - 1)),
        "{refused}"
    );
}
