use super::*;

fn backend(last: u8) -> MeshBackend {
    let ip = Ipv4Addr::new(10, 255, 0, last);
    MeshBackend {
        ip,
        port: 80,
        mac: MacAddr::from_ipv4(ip),
    }
}

fn spec(ports: &[(u16, &[u8])]) -> MeshSpec {
    MeshSpec {
        locals: BTreeSet::from([Ipv4Addr::new(198, 18, 0, 1)]),
        services: ports
            .iter()
            .map(|(port, lasts)| PublishedService {
                protocol: Proto::Tcp,
                port: *port,
                backends: lasts.iter().map(|l| backend(*l)).collect(),
                lingering: Vec::new(),
            })
            .collect(),
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
fn a_spec_is_written_once_and_then_left_alone() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    let s = spec(&[(8080, &[2, 3, 4])]);
    let first = mesh.apply(&s)?;
    assert_eq!(first.services_written, 1);
    assert_eq!(first.live_added, 3);
    assert!(mesh.apply(&s)?.is_empty());
    // Backends listed in another order are the same port.
    assert!(mesh.apply(&spec(&[(8080, &[4, 2, 3])]))?.is_empty());
    // A new agent reading the same tables back has nothing to write.
    let kernel = std::mem::take(mesh.kernel());
    let mut again = Mesh::new(kernel)?;
    assert!(again.apply(&s)?.is_empty());
    Ok(())
}

#[test]
fn every_backend_gets_flows_and_removal_moves_only_its_own() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    mesh.apply(&spec(&[(8080, &[2, 3, 4])]))?;
    let before: Vec<_> = clients()
        .map(|(c, p)| mesh.kernel().pick(c, p, 8080, Proto::Tcp))
        .collect();
    let hit: BTreeSet<_> = before.iter().flatten().map(|(ip, _)| *ip).collect();
    assert_eq!(hit.len(), 3, "every backend gets some flows");

    let changes = mesh.apply(&spec(&[(8080, &[2, 4])]))?;
    assert_eq!((changes.services_written, changes.live_removed), (1, 1));
    let removed = Ipv4Addr::new(10, 255, 0, 3);
    let mut moved = 0;
    for ((c, p), old) in clients().zip(&before) {
        let new = mesh.kernel().pick(c, p, 8080, Proto::Tcp);
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
fn a_port_without_backends_is_removed_with_its_live_entries() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    mesh.apply(&spec(&[(8080, &[2]), (9090, &[5])]))?;
    let changes = mesh.apply(&spec(&[(9090, &[5])]))?;
    assert_eq!((changes.services_deleted, changes.live_removed), (1, 1));
    assert_eq!(
        mesh.kernel()
            .pick(Ipv4Addr::new(1, 2, 3, 4), 1000, 8080, Proto::Tcp),
        None
    );
    assert!(mesh
        .kernel()
        .pick(Ipv4Addr::new(1, 2, 3, 4), 1000, 9090, Proto::Tcp)
        .is_some());
    Ok(())
}

#[test]
fn tcp_and_udp_on_one_port_are_separate() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    let mut s = spec(&[(53, &[2])]);
    s.services.push(PublishedService {
        protocol: Proto::Udp,
        port: 53,
        backends: vec![backend(9)],
        lingering: Vec::new(),
    });
    mesh.apply(&s)?;
    let client = Ipv4Addr::new(1, 2, 3, 4);
    assert_eq!(
        mesh.kernel()
            .pick(client, 5000, 53, Proto::Udp)
            .map(|b| b.0),
        Some(Ipv4Addr::new(10, 255, 0, 9))
    );
    assert_eq!(
        mesh.kernel()
            .pick(client, 5000, 53, Proto::Tcp)
            .map(|b| b.0),
        Some(Ipv4Addr::new(10, 255, 0, 2))
    );
    Ok(())
}

#[test]
fn one_change_among_ten_thousand_ports_is_one_write() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    let mut s = MeshSpec::default();
    for i in 0..10_000u16 {
        s.services.push(PublishedService {
            protocol: Proto::Tcp,
            port: 10_000 + i,
            backends: vec![backend((i % 200) as u8 + 2)],
            lingering: Vec::new(),
        });
    }
    mesh.apply(&s)?;
    mesh.kernel().writes = 0;
    s.services[1234].backends.push(backend(250));
    let changes = mesh.apply(&s)?;
    assert_eq!(changes.services_written, 1);
    assert_eq!(mesh.kernel().writes, 2, "one table and one live entry");
    Ok(())
}

#[test]
fn a_lingering_backend_keeps_its_flows_but_gets_no_new_ones() -> Result<(), MeshError> {
    let mut mesh = Mesh::new(FakeMesh::default())?;
    mesh.apply(&spec(&[(8080, &[2, 3])]))?;
    let mut s = spec(&[(8080, &[2])]);
    s.services[0].lingering.push(backend(3));
    let changes = mesh.apply(&s)?;
    assert_eq!((changes.services_written, changes.live_removed), (1, 0));
    for (c, p) in clients().take(200) {
        assert_eq!(
            mesh.kernel().pick(c, p, 8080, Proto::Tcp).map(|b| b.0),
            Some(Ipv4Addr::new(10, 255, 0, 2))
        );
    }
    // Withdrawn for good: now its flows go.
    assert_eq!(mesh.apply(&spec(&[(8080, &[2])]))?.live_removed, 1);
    // Only lingering backends: an empty table, live entries kept.
    let mut s = spec(&[(8080, &[])]);
    s.services[0].lingering.push(backend(2));
    let changes = mesh.apply(&s)?;
    assert_eq!((changes.services_written, changes.live_removed), (1, 0));
    assert_eq!(
        mesh.kernel()
            .pick(Ipv4Addr::new(1, 2, 3, 4), 9, 8080, Proto::Tcp),
        None
    );
    Ok(())
}
