use super::*;

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn backend(last: u8) -> MeshBackend {
    let ip = Ipv4Addr::new(10, 255, 0, last);
    MeshBackend {
        ip,
        port: 80,
        mac: MacAddr::from_ipv4(ip),
    }
}

fn many(n: u32) -> Vec<MeshBackend> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0aff_0000 + i + 2);
            MeshBackend {
                ip,
                port: 80,
                mac: MacAddr::from_ipv4(ip),
            }
        })
        .collect()
}

fn spec(ports: &[(u16, &[u8])]) -> BalancerSpec {
    BalancerSpec {
        locals: BTreeSet::from([NODE]),
        services: ports
            .iter()
            .map(|(port, lasts)| PublishedService {
                protocol: Protocol::Tcp,
                port: *port,
                backends: lasts.iter().map(|l| backend(*l)).collect(),
                lingering: Vec::new(),
            })
            .collect(),
        vips: BTreeMap::new(),
    }
}

fn tcp(port: u16) -> PortKey {
    PortKey {
        protocol: Protocol::Tcp,
        port,
    }
}

fn clients() -> impl Iterator<Item = (Ipv4Addr, u16)> {
    (0..2000u32).map(|i| {
        (
            Ipv4Addr::new(198, 19, (i / 200) as u8, (i % 200) as u8),
            40000 + i as u16,
        )
    })
}

#[test]
fn a_spec_is_written_once_and_then_left_alone() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    let s = spec(&[(8080, &[2, 3, 4])]);
    let first = lb.apply(&s)?;
    assert_eq!((first.ports_written, first.locals_changed), (1, 1));
    assert!(lb.apply(&s)?.is_empty());
    // Backends listed in another order are the same port.
    assert!(lb.apply(&spec(&[(8080, &[4, 2, 3])]))?.is_empty());
    // A new agent reading the same balancer back has nothing to write.
    let kernel = std::mem::take(lb.kernel());
    let mut again = Balancer::new(kernel)?;
    assert!(again.apply(&s)?.is_empty());
    Ok(())
}

#[test]
fn every_backend_gets_flows_and_removal_moves_only_its_own() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.apply(&spec(&[(8080, &[2, 3, 4])]))?;
    let before: Vec<_> = clients()
        .map(|(c, p)| lb.kernel().pick(c, p, NODE, 8080, Protocol::Tcp))
        .collect();
    let hit: BTreeSet<_> = before.iter().flatten().map(|(ip, _)| *ip).collect();
    assert_eq!(hit.len(), 3, "every backend gets some flows");

    let changes = lb.apply(&spec(&[(8080, &[2, 4])]))?;
    assert_eq!(changes.ports_written, 1);
    let removed = Ipv4Addr::new(10, 255, 0, 3);
    let mut moved = 0;
    for ((c, p), old) in clients().zip(&before) {
        let new = lb.kernel().pick(c, p, NODE, 8080, Protocol::Tcp);
        assert_ne!(new.map(|b| b.0), Some(removed));
        if old.map(|b| b.0) != Some(removed) && new != *old {
            moved += 1;
        }
    }
    assert!(
        moved * 100 / 2000 < 5,
        "{moved} of 2000 flows of surviving backends moved"
    );
    Ok(())
}

#[test]
fn one_client_port_through_two_nodes_usually_gets_two_backends() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.apply(&spec(&[(8080, &[2, 3, 4, 5, 6, 7, 8, 9])]))?;
    let other = Ipv4Addr::new(198, 18, 0, 2);
    let same = clients()
        .filter(|(c, p)| {
            lb.kernel().pick(*c, *p, NODE, 8080, Protocol::Tcp)
                == lb.kernel().pick(*c, *p, other, 8080, Protocol::Tcp)
        })
        .count();
    // About one in eight, as with independent picks.
    assert!(
        same < 2000 / 5,
        "{same} of 2000 client ports got one backend through both nodes"
    );
    Ok(())
}

#[test]
fn a_port_without_backends_is_removed() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.apply(&spec(&[(8080, &[2]), (9090, &[5])]))?;
    let changes = lb.apply(&spec(&[(9090, &[5])]))?;
    assert_eq!(changes.ports_deleted, 1);
    let client = Ipv4Addr::new(1, 2, 3, 4);
    assert_eq!(
        lb.kernel().pick(client, 1000, NODE, 8080, Protocol::Tcp),
        None
    );
    assert!(lb
        .kernel()
        .pick(client, 1000, NODE, 9090, Protocol::Tcp)
        .is_some());
    Ok(())
}

#[test]
fn tcp_and_udp_on_one_port_are_separate() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    let mut s = spec(&[(53, &[2])]);
    s.services.push(PublishedService {
        protocol: Protocol::Udp,
        port: 53,
        backends: vec![backend(9)],
        lingering: Vec::new(),
    });
    lb.apply(&s)?;
    let client = Ipv4Addr::new(1, 2, 3, 4);
    let pick = |lb: &mut Balancer<FakeBalancer>, proto| {
        lb.kernel().pick(client, 5000, NODE, 53, proto).map(|b| b.0)
    };
    assert_eq!(
        pick(&mut lb, Protocol::Udp),
        Some(Ipv4Addr::new(10, 255, 0, 9))
    );
    assert_eq!(
        pick(&mut lb, Protocol::Tcp),
        Some(Ipv4Addr::new(10, 255, 0, 2))
    );
    Ok(())
}

#[test]
fn one_change_among_ten_thousand_ports_is_one_write() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    let mut s = BalancerSpec::default();
    for i in 0..10_000u16 {
        s.services.push(PublishedService {
            protocol: Protocol::Tcp,
            port: 10_000 + i,
            backends: vec![backend((i % 200) as u8 + 2)],
            lingering: Vec::new(),
        });
    }
    lb.apply(&s)?;
    lb.kernel().writes = 0;
    s.services[1234].backends.push(backend(250));
    let changes = lb.apply(&s)?;
    assert_eq!(changes.ports_written, 1);
    assert_eq!(lb.kernel().writes, 1);
    Ok(())
}

#[test]
fn a_lingering_backend_keeps_its_flows_but_gets_no_new_ones() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.apply(&spec(&[(8080, &[2, 3])]))?;
    let mut s = spec(&[(8080, &[2])]);
    s.services[0].lingering.push(backend(3));
    assert_eq!(lb.apply(&s)?.ports_written, 1);
    let held = &lb.kernel().held.ports[&tcp(8080)];
    assert!(held.lingering.contains(&backend(3)));
    for (c, p) in clients().take(200) {
        assert_eq!(
            lb.kernel()
                .pick(c, p, NODE, 8080, Protocol::Tcp)
                .map(|b| b.0),
            Some(Ipv4Addr::new(10, 255, 0, 2))
        );
    }
    // Withdrawn for good: now its flows go.
    lb.apply(&spec(&[(8080, &[2])]))?;
    assert!(lb.kernel().held.ports[&tcp(8080)].lingering.is_empty());
    // Only lingering backends: the port stays, with no active backend.
    let mut s = spec(&[(8080, &[])]);
    s.services[0].lingering.push(backend(2));
    lb.apply(&s)?;
    let held = &lb.kernel().held.ports[&tcp(8080)];
    assert!(held.active.is_empty() && held.lingering.contains(&backend(2)));
    assert_eq!(
        lb.kernel()
            .pick(Ipv4Addr::new(1, 2, 3, 4), 9, NODE, 8080, Protocol::Tcp),
        None
    );
    Ok(())
}

#[test]
fn more_backends_than_the_limit_are_served_up_to_it_and_reported() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    let limit = lb.kernel().limits.backends_per_port;
    // Over the small table (128), within the limit: all serve.
    let mut s = BalancerSpec {
        locals: BTreeSet::from([NODE]),
        services: vec![PublishedService {
            protocol: Protocol::Tcp,
            port: 8080,
            backends: many(300),
            lingering: Vec::new(),
        }],
        vips: BTreeMap::new(),
    };
    let changes = lb.apply(&s)?;
    assert!(changes.over_limit.is_empty());
    let hit: BTreeSet<_> = clients()
        .filter_map(|(c, p)| lb.kernel().pick(c, p, NODE, 8080, Protocol::Tcp))
        .collect();
    assert!(hit.len() > 250, "{} of 300 backends got flows", hit.len());

    // Over the limit: the first `limit` serve, the rest linger, and it is said.
    s.services[0].backends = many(limit as u32 + 10);
    let changes = lb.apply(&s)?;
    assert_eq!(
        changes.over_limit,
        vec![Overflow::Port {
            port: tcp(8080),
            backends: limit + 10,
            limit
        }]
    );
    let held = &lb.kernel().held.ports[&tcp(8080)];
    assert_eq!((held.active.len(), held.lingering.len()), (limit, 10));
    let message = changes.over_limit[0].to_string();
    assert!(message.contains("8080/tcp has 1034 backends"), "{message}");
    Ok(())
}

#[test]
fn virtual_ips_are_written_when_they_change_and_cut_to_the_limit() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.kernel().limits.tasks_per_vip = 3;
    let vip = Ipv4Addr::new(10, 0, 0, 254);
    let tasks =
        |n: u8| -> BTreeSet<Ipv4Addr> { (2..2 + n).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect() };
    let mut s = spec(&[]);
    s.vips.insert(vip, tasks(2));
    assert_eq!(lb.apply(&s)?.vips_written, 1);
    assert!(lb.apply(&s)?.is_empty());
    s.vips.insert(vip, tasks(5));
    let changes = lb.apply(&s)?;
    assert_eq!(changes.vips_written, 1);
    assert_eq!(
        changes.over_limit,
        vec![Overflow::Vip {
            vip,
            tasks: 5,
            limit: 3
        }]
    );
    assert_eq!(lb.kernel().held.vips[&vip], tasks(3));
    s.vips.clear();
    assert_eq!(lb.apply(&s)?.vips_deleted, 1);
    assert!(lb.kernel().held.vips.is_empty());
    Ok(())
}

#[test]
fn a_refused_port_is_reported_and_never_blocks_the_others() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.kernel().refused_ports.insert(tcp(8080));
    let s = spec(&[(8080, &[2]), (8081, &[3]), (9090, &[4])]);
    let changes = lb.apply(&s)?;
    assert_eq!(changes.ports_written, 2);
    assert_eq!(
        changes.failed_ports.keys().copied().collect::<Vec<_>>(),
        [tcp(8080)]
    );
    assert!(changes.failed_ports[&tcp(8080)].contains("8080/tcp refused"));
    let held = &lb.kernel().held.ports;
    assert!(held.contains_key(&tcp(8081)) && held.contains_key(&tcp(9090)));
    assert!(!held.contains_key(&tcp(8080)));
    // Removing a refused port fails alone too; the others go.
    lb.kernel().refused_ports = BTreeSet::from([tcp(8081)]);
    let changes = lb.apply(&spec(&[(8080, &[2])]))?;
    assert_eq!((changes.ports_written, changes.ports_deleted), (1, 1));
    assert_eq!(
        changes.failed_ports.keys().copied().collect::<Vec<_>>(),
        [tcp(8081)]
    );
    assert!(lb.kernel().held.ports.contains_key(&tcp(8081)));
    assert!(!lb.kernel().held.ports.contains_key(&tcp(9090)));
    Ok(())
}

#[test]
fn held_ports_are_neither_written_nor_removed() -> Result<(), BalancerError> {
    let mut lb = Balancer::new(FakeBalancer::default())?;
    lb.apply(&spec(&[(8080, &[2]), (9090, &[3])]))?;
    let held = BTreeSet::from([tcp(8080), tcp(9090)]);
    // 8080 changes and 9090 goes, but both wait out a retry: untouched.
    let changes = lb.apply_holding(&spec(&[(8080, &[2, 5]), (7070, &[6])]), &held)?;
    assert_eq!((changes.ports_written, changes.ports_deleted), (1, 0));
    let ports = &lb.kernel().held.ports;
    assert_eq!(ports[&tcp(8080)].active.len(), 1);
    assert!(ports.contains_key(&tcp(9090)) && ports.contains_key(&tcp(7070)));
    Ok(())
}
