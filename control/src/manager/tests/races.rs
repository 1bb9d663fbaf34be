//! Requests racing each other and the cluster's own writes: the store lands
//! another writer's command between a handler's read and its write.

use super::*;
use crate::objects::{GuardVersions, LookupError, NetworkGuard};
use crate::store::Object;

/// The write a `service create` of `spec` on the current store makes.
fn service_create_write(swarm: &Swarm, spec: ServiceSpec) -> Command {
    let objects = swarm.store.read();
    let guards = GuardVersions::read(&objects);
    let networks: Vec<Network> = objects.all().unwrap();
    let spec = crate::orchestrator::admit(spec, &[], &networks, None).unwrap();
    let service = Service {
        id: "svc-racing".into(),
        spec,
        previous_spec: None,
        spec_version: 1,
        update_status: None,
        created_at: 0,
        updated_at: 0,
        virtual_ips: vec![],
    };
    Command::Batch(vec![
        guards.services_changed(&service.id).unwrap(),
        guards.networks_changed(&service.id).unwrap(),
        Command::put(&service, Some(0)).unwrap(),
    ])
}

#[tokio::test]
async fn network_rm_loses_to_a_service_create_that_committed_first() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let web = create_network(&m, "web").await;
    let guard_before = swarm.store.read().version_of::<NetworkGuard>("guard");
    // `network rm` checks: no service uses web. Then a create that saw web
    // lands before its write.
    swarm
        .store
        .interleave(service_create_write(&swarm, spec_on("a", "web", 1)));
    let rm = local(
        &m,
        ApiRequest::NetworkRemove {
            name_or_id: "web".into(),
        },
    )
    .await;
    assert!(
        matches!(&rm, Err(ManagerError::NetworkInUse { network, services })
            if network == "web" && services == "a"),
        "{rm:?}"
    );
    assert!(swarm.networks().iter().any(|n| n.id == web.id));
    assert_eq!(swarm.services().len(), 1);
    // Unopposed, `network rm` writes the network guard with the delete.
    local(
        &m,
        ApiRequest::ServiceRemove {
            service: "a".into(),
        },
    )
    .await
    .unwrap();
    local(
        &m,
        ApiRequest::NetworkRemove {
            name_or_id: "web".into(),
        },
    )
    .await
    .unwrap();
    assert!(swarm.store.read().version_of::<NetworkGuard>("guard") > guard_before);
    assert!(!swarm.networks().iter().any(|n| n.id == web.id));
}

#[tokio::test]
async fn a_service_create_loses_to_a_network_rm_that_committed_first() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let web = create_network(&m, "web").await;
    // `service create` admits the spec on web; `network rm` lands first.
    let objects = swarm.store.read();
    let guards = GuardVersions::read(&objects);
    swarm.store.interleave(Command::Batch(vec![
        guards.networks_changed(&web.id).unwrap(),
        guards.services_changed(&web.id).unwrap(),
        Command::remove::<Network>(&web.id, None),
    ]));
    let created = create_service(&m, spec_on("a", "web", 1)).await;
    assert!(
        matches!(
            created,
            Err(ManagerError::Admission(
                crate::orchestrator::AdmissionError::Network(LookupError::NotFound { .. })
            ))
        ),
        "{created:?}"
    );
    assert!(
        swarm.services().is_empty(),
        "no service on a removed network"
    );
}

#[tokio::test]
async fn promote_succeeds_when_a_heartbeat_wrote_the_node_meanwhile() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    // The node's heartbeat on the leader writes it (Ready, resources)
    // between promote's read and its write.
    let mut busy = worker(1);
    busy.resources.nano_cpus += 1;
    swarm.store.interleave(Command::put(&busy, None).unwrap());
    let promoted = local(
        &m,
        ApiRequest::NodeSetRole {
            node: "h1".into(),
            role: Role::Manager,
        },
    )
    .await;
    assert!(
        matches!(&promoted, Ok(ApiResponse::Done { message }) if message.contains("promoted")),
        "{promoted:?}"
    );
    let h1 = swarm.node("node001").unwrap();
    assert_eq!(h1.role, Role::Manager);
    assert!(h1.raft_id.is_some());
    // The heartbeat's write is kept, not overwritten.
    assert_eq!(h1.resources.nano_cpus, busy.resources.nano_cpus);
    assert_eq!(swarm.store.writes(), 2, "one lost race, one write");
}

#[tokio::test]
async fn a_node_change_gives_up_only_after_losing_every_race() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    for _ in 0..10 {
        swarm
            .store
            .interleave(Command::put(&worker(1), None).unwrap());
    }
    let update = local(
        &m,
        ApiRequest::NodeUpdate {
            node: "h1".into(),
            availability: None,
            label_add: vec![("a".into(), "b".into())],
            label_rm: vec![],
        },
    )
    .await;
    assert!(
        matches!(&update, Err(ManagerError::Changed { kind, .. }) if *kind == Node::KIND),
        "{update:?}"
    );
}
