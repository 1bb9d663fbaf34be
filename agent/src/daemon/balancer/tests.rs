use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::balancer::{FakeBalancer, Overflow, PortKey, Protocol};
use crate::gossip::table::PublishedPort;

const VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn record(
    task: &str,
    ip: [u8; 4],
    ports: Vec<PublishedPort>,
    vip: Option<[u8; 4]>,
) -> EndpointRecord {
    let ip = Ipv4Addr::from(ip);
    EndpointRecord {
        task_id: task.into(),
        service: "web".into(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        vtep: Ipv4Addr::new(198, 18, 0, 2),
        ports,
        vip: vip.map(Ipv4Addr::from),
        aliases: Vec::new(),
        host_ports: Vec::new(),
    }
}

fn http() -> PublishedPort {
    PublishedPort {
        protocol: Protocol::Tcp,
        published: 8080,
        target: 80,
    }
}

fn networks() -> Vec<NetworkSpec> {
    let net = |id: &str, vni, subnet: &str, ingress| NetworkSpec {
        id: id.into(),
        vni,
        subnet: subnet.parse().expect("subnet"),
        gateway: Ipv4Addr::new(10, 255, 0, 1),
        mtu: None,
        ingress,
    };
    vec![
        net("ing", 4096, "10.255.0.0/16", true),
        net("app", 4097, "10.0.1.0/24", false),
    ]
}

/// A plane over `fake`, counting how often it loads it.
fn plane(fake: FakeBalancer) -> (BalancerPlane<FakeBalancer>, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = loads.clone();
    let mut fake = Some(fake);
    let load: Loader<FakeBalancer> = Box::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        Ok(fake.take().unwrap_or_default())
    });
    let plane = BalancerPlane::new(load, VTEP, "/sys/fs/cgroup/shoal".into(), None)
        .with_warm_up(Duration::ZERO);
    (plane, loads)
}

fn tables(entries: Vec<(&str, Vec<EndpointRecord>)>) -> BTreeMap<String, Vec<EndpointRecord>> {
    entries
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect()
}

fn held(plane: &mut BalancerPlane<FakeBalancer>) -> Programmed {
    plane
        .balancer()
        .map(|b| b.kernel().held.clone())
        .unwrap_or_default()
}

const HTTP: PortKey = PortKey {
    protocol: Protocol::Tcp,
    port: 8080,
};

#[test]
fn nothing_is_loaded_before_the_swarm_has_an_ingress_network() -> Result<(), BalancerError> {
    let (mut plane, loads) = plane(FakeBalancer::default());
    let app: Vec<NetworkSpec> = networks().into_iter().filter(|n| !n.ingress).collect();
    let changes = plane.sync(&app, &BTreeMap::new(), &BTreeMap::new(), 1500)?;
    assert!(changes.is_empty() && plane.balancer().is_none());
    assert_eq!(loads.load(Ordering::Relaxed), 0);
    Ok(())
}

#[test]
fn ingress_endpoints_with_ports_are_backends_and_vip_holders_are_its_tasks(
) -> Result<(), BalancerError> {
    let (mut plane, loads) = plane(FakeBalancer::default());
    let live = tables(vec![
        (
            "ing",
            vec![
                record("a", [10, 255, 0, 2], vec![http()], None),
                record("b", [10, 255, 0, 3], vec![http()], None),
                record("c", [10, 255, 0, 4], vec![], None),
            ],
        ),
        (
            "app",
            vec![
                record("a", [10, 0, 1, 2], vec![], Some([10, 0, 1, 254])),
                record("b", [10, 0, 1, 3], vec![], Some([10, 0, 1, 254])),
            ],
        ),
    ]);
    plane.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    let held = held(&mut plane);
    let ips: Vec<Ipv4Addr> = held.ports[&HTTP].active.iter().map(|b| b.ip).collect();
    assert_eq!(
        ips,
        [Ipv4Addr::new(10, 255, 0, 2), Ipv4Addr::new(10, 255, 0, 3)]
    );
    assert!(held.ports[&HTTP].active.iter().all(|b| b.port == 80));
    assert_eq!(held.ports.len(), 1);
    assert_eq!(
        held.vips[&Ipv4Addr::new(10, 0, 1, 254)],
        BTreeSet::from([Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)])
    );
    assert_eq!(held.locals, BTreeSet::from([VTEP]));

    // Attached where the ingress network says, once; loaded once.
    let fake = plane.balancer().map(|b| b.kernel()).expect("loaded");
    let node = fake.attached.last().expect("attached").clone();
    assert_eq!((node.network.as_str(), node.vni), ("ing", 4096));
    assert_eq!((node.underlay_mtu, node.network_mtu), (1500, 1450));
    assert_eq!(node.gateway_mac, gateway_mac(VTEP));
    assert_eq!(
        node.subnet,
        "10.255.0.0/16".parse::<ipnet::Ipv4Net>().expect("net")
    );
    assert!(plane
        .sync(&networks(), &live, &BTreeMap::new(), 1500)?
        .is_empty());
    let fake = plane.balancer().map(|b| b.kernel()).expect("loaded");
    assert_eq!(fake.attached.len(), 2, "checked at every sync");
    assert_eq!(fake.attached[0], fake.attached[1]);
    assert_eq!(loads.load(Ordering::Relaxed), 1);
    Ok(())
}

#[test]
fn backends_of_a_down_node_linger_and_withdrawn_ones_go() -> Result<(), BalancerError> {
    // Withdrawn backends go at the first sync once their linger is over
    // (`a_backend_that_leaves_keeps_its_flows_for_a_while` holds the linger).
    let (plane, _) = plane(FakeBalancer::default());
    let mut plane = plane.with_departed_linger(Duration::ZERO);
    let both = tables(vec![(
        "ing",
        vec![
            record("a", [10, 255, 0, 2], vec![http()], None),
            record("b", [10, 255, 0, 3], vec![http()], None),
        ],
    )]);
    plane.sync(&networks(), &both, &BTreeMap::new(), 1500)?;
    let (one, other) = (
        tables(vec![("ing", vec![both["ing"][0].clone()])]),
        tables(vec![("ing", vec![both["ing"][1].clone()])]),
    );
    plane.sync(&networks(), &one, &other, 1500)?;
    let port = &held(&mut plane).ports[&HTTP];
    assert_eq!(port.active.len(), 1);
    assert_eq!(
        port.lingering.iter().map(|b| b.ip).collect::<Vec<_>>(),
        [Ipv4Addr::new(10, 255, 0, 3)]
    );
    plane.sync(&networks(), &one, &BTreeMap::new(), 1500)?;
    assert!(held(&mut plane).ports[&HTTP].lingering.is_empty());
    plane.sync(&networks(), &BTreeMap::new(), &BTreeMap::new(), 1500)?;
    assert!(held(&mut plane).ports.is_empty());
    Ok(())
}

#[test]
fn a_restarted_agent_keeps_what_it_inherited_while_warming_up() -> Result<(), BalancerError> {
    let mut earlier = FakeBalancer::default();
    let backend = MeshBackend {
        ip: Ipv4Addr::new(10, 255, 0, 9),
        port: 80,
        mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 255, 0, 9)),
    };
    earlier.held.ports.insert(
        HTTP,
        crate::balancer::PortBackends {
            active: BTreeSet::from([backend.clone()]),
            lingering: BTreeSet::new(),
        },
    );
    let vip = Ipv4Addr::new(10, 0, 1, 254);
    earlier
        .held
        .vips
        .insert(vip, BTreeSet::from([Ipv4Addr::new(10, 0, 1, 9)]));
    let (plane, _) = plane(earlier);
    let mut plane = plane.with_warm_up(Duration::from_secs(3600));
    // Gossip knows nothing yet: the inherited backend lingers, the VIP stays.
    plane.sync(&networks(), &BTreeMap::new(), &BTreeMap::new(), 1500)?;
    let now = held(&mut plane);
    assert_eq!(now.ports[&HTTP].lingering, BTreeSet::from([backend]));
    assert!(now.ports[&HTTP].active.is_empty());
    assert_eq!(now.vips[&vip], BTreeSet::from([Ipv4Addr::new(10, 0, 1, 9)]));

    // Warmed up: what gossip does not list goes.
    let mut plane = plane.with_warm_up(Duration::ZERO);
    plane.sync(&networks(), &BTreeMap::new(), &BTreeMap::new(), 1500)?;
    let now = held(&mut plane);
    assert!(now.ports.is_empty() && now.vips.is_empty());
    Ok(())
}

#[test]
fn entries_over_the_limits_are_served_up_to_them_and_reported_once() -> Result<(), BalancerError> {
    let mut fake = FakeBalancer::default();
    fake.limits.backends_per_port = 2;
    let (mut plane, _) = plane(fake);
    let live = tables(vec![(
        "ing",
        (2..7)
            .map(|i| record(&format!("t{i}"), [10, 255, 0, i], vec![http()], None))
            .collect(),
    )]);
    match plane.sync(&networks(), &live, &BTreeMap::new(), 1500) {
        Err(BalancerError::OverLimit(over)) => assert_eq!(
            over,
            vec![Overflow::Port {
                port: HTTP,
                backends: 5,
                limit: 2
            }]
        ),
        other => panic!("wanted an over-limit error, got {other:?}"),
    }
    let port = &held(&mut plane).ports[&HTTP];
    assert_eq!((port.active.len(), port.lingering.len()), (2, 3));
    // Said once; still known for the metrics.
    assert!(plane
        .sync(&networks(), &live, &BTreeMap::new(), 1500)
        .is_ok());
    assert_eq!(plane.over_limit().len(), 1);
    let fewer = tables(vec![("ing", live["ing"][..2].to_vec())]);
    plane.sync(&networks(), &fewer, &BTreeMap::new(), 1500)?;
    assert!(plane.over_limit().is_empty());
    Ok(())
}

#[test]
fn a_balancer_that_fails_to_load_is_tried_again() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = tries.clone();
    let load: Loader<FakeBalancer> = Box::new(move || {
        if counted.fetch_add(1, Ordering::Relaxed) == 0 {
            Err(BalancerError::Attach("not yet".into()))
        } else {
            Ok(FakeBalancer::default())
        }
    });
    let mut plane = BalancerPlane::new(load, VTEP, "/sys/fs/cgroup/shoal".into(), None);
    let live = BTreeMap::new();
    assert!(plane.sync(&networks(), &live, &live, 1500).is_err());
    assert!(plane.sync(&networks(), &live, &live, 1500).is_ok());
    assert_eq!(tries.load(Ordering::Relaxed), 2);
}

#[test]
fn gateway_macs_carry_the_vtep() {
    let mac = gateway_mac(Ipv4Addr::new(198, 18, 0, 7));
    assert_eq!(mac.octets(), [0x02, 0x5e, 198, 18, 0, 7]);
    assert_ne!(mac, MacAddr::from_ipv4(Ipv4Addr::new(198, 18, 0, 7)));
}

#[test]
fn a_backend_that_leaves_keeps_its_flows_for_a_while() {
    let backend = MeshBackend {
        ip: Ipv4Addr::new(10, 255, 0, 3),
        port: 80,
        mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 255, 0, 3)),
    };
    let with = BalancerSpec {
        services: vec![PublishedService {
            protocol: Protocol::Tcp,
            port: 8080,
            backends: vec![backend.clone()],
            lingering: Vec::new(),
        }],
        ..BalancerSpec::default()
    };
    let without = BalancerSpec::default();
    let mut departed = BTreeMap::new();
    let t0 = Instant::now();
    let previous = active_backends(&with);
    let kept = keep_departed(
        without.clone(),
        &previous,
        &mut departed,
        t0,
        DEPARTED_LINGER,
    );
    assert_eq!(kept.services.len(), 1);
    assert!(kept.services[0].backends.is_empty(), "no new flows");
    assert_eq!(kept.services[0].lingering, vec![backend.clone()]);
    // Still lingering a moment later, gone after the linger.
    let later = keep_departed(
        without.clone(),
        &BTreeSet::new(),
        &mut departed,
        t0 + Duration::from_secs(1),
        DEPARTED_LINGER,
    );
    assert_eq!(later.services[0].lingering, vec![backend.clone()]);
    let after = keep_departed(
        without.clone(),
        &BTreeSet::new(),
        &mut departed,
        t0 + DEPARTED_LINGER,
        DEPARTED_LINGER,
    );
    assert!(after.services.is_empty());
    assert!(departed.is_empty());
    // A backend that comes back takes new flows again at once.
    keep_departed(without, &previous, &mut departed, t0, DEPARTED_LINGER);
    let back = keep_departed(
        with.clone(),
        &BTreeSet::new(),
        &mut departed,
        t0,
        DEPARTED_LINGER,
    );
    assert_eq!(back, with);
    assert!(departed.is_empty());
}

#[test]
fn a_host_mode_port_is_served_only_by_the_node_of_its_task() -> Result<(), BalancerError> {
    let (mut this, _) = plane(FakeBalancer::default());
    let mut here = record("a", [10, 255, 0, 2], vec![], None);
    here.vtep = VTEP;
    here.host_ports = vec![http()];
    let mut there = record("b", [10, 255, 0, 3], vec![], None);
    there.host_ports = vec![http()];
    let live = tables(vec![("ing", vec![here.clone(), there.clone()])]);
    this.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    let ips: Vec<Ipv4Addr> = held(&mut this).ports[&HTTP]
        .active
        .iter()
        .map(|b| b.ip)
        .collect();
    assert_eq!(ips, [Ipv4Addr::new(10, 255, 0, 2)], "only this node's task");

    // A node with no task of its own does not program the port at all.
    let live = tables(vec![("ing", vec![there])]);
    let (mut other, _) = plane(FakeBalancer::default());
    other.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    assert!(held(&mut other).ports.is_empty());
    Ok(())
}

#[test]
fn a_refused_port_backs_off_on_its_own_while_the_others_are_served() -> Result<(), BalancerError> {
    let other = PortKey {
        protocol: Protocol::Tcp,
        port: 9090,
    };
    let mut fake = FakeBalancer::default();
    fake.refused_ports.insert(HTTP);
    let (mut plane, _) = plane(fake);
    let both = |task: &str, ip: [u8; 4]| {
        let mut ports = vec![http()];
        ports.push(PublishedPort {
            protocol: Protocol::Tcp,
            published: 9090,
            target: 90,
        });
        record(task, ip, ports, None)
    };
    let live = tables(vec![("ing", vec![both("a", [10, 255, 0, 2])])]);
    plane.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    assert!(held(&mut plane).ports.contains_key(&other));
    assert!(!held(&mut plane).ports.contains_key(&HTTP));
    let failing = plane.failing_ports();
    assert_eq!(failing.len(), 1);
    assert_eq!((failing[0].port, failing[0].attempts), (HTTP, 1));
    assert!(failing[0].error.contains("8080/tcp refused"), "{failing:?}");
    assert_eq!(plane.port_failures(), 1);
    let due = plane.next_port_retry().expect("a retry is due");
    assert!(due > Instant::now() + Duration::from_millis(500));

    // Passes before the retry is due leave 8080 alone and still serve the
    // others (a new backend on 9090 is written).
    let live = tables(vec![(
        "ing",
        vec![both("a", [10, 255, 0, 2]), both("b", [10, 255, 0, 3])],
    )]);
    plane.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    let refusals = |plane: &mut BalancerPlane<FakeBalancer>| {
        plane.balancer().map(|b| b.kernel().refusals).unwrap_or(0)
    };
    assert_eq!(refusals(&mut plane), 1, "8080 was retried before its delay");
    assert_eq!(held(&mut plane).ports[&other].active.len(), 2);
    assert_eq!(plane.failing_ports()[0].attempts, 1);

    // Once due it is tried again: refused again, it waits twice as long.
    std::thread::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(50));
    plane.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    assert_eq!(refusals(&mut plane), 2);
    assert_eq!(plane.failing_ports()[0].attempts, 2);
    let next = plane.next_port_retry().expect("a retry is due");
    assert!(next > Instant::now() + Duration::from_millis(1500));

    // The balancer takes it at last: served, and no longer failing.
    if let Some(b) = plane.balancer() {
        b.kernel().refused_ports.clear();
    }
    std::thread::sleep(next.saturating_duration_since(Instant::now()) + Duration::from_millis(50));
    plane.sync(&networks(), &live, &BTreeMap::new(), 1500)?;
    assert_eq!(held(&mut plane).ports[&HTTP].active.len(), 2);
    assert!(plane.failing_ports().is_empty());
    assert_eq!(plane.next_port_retry(), None);
    assert_eq!(plane.port_failures(), 2);
    Ok(())
}
