//! The IPVS tables the balancer's calls produce, against [`FakeIpvs`] in
//! the node's namespace and in each sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::executor::block_on;
use shoal_control::objects::MacAddr;

use super::*;
use crate::balancer::{Balancer, BalancerSpec, PublishedService};
use crate::ipvs::FakeIpvs;

/// A node with sandboxes, recording what it was asked.
#[derive(Default)]
struct FakeNode {
    sandboxes: BTreeSet<String>,
    marks: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    wired: usize,
    unwired: bool,
    /// What the node's IPVS holds when opened (an earlier agent's).
    host_seed: Option<FakeIpvs>,
}

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OTHER_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const TCP_TIMEOUT: u32 = 432_000;

impl IpvsNode for FakeNode {
    type Kernel = FakeIpvs;
    fn open(
        &mut self,
        _rt: &tokio::runtime::Runtime,
        sandbox: Option<&str>,
    ) -> Result<FakeIpvs, IpvsError> {
        Ok(match sandbox {
            None => self.host_seed.take().unwrap_or_default(),
            Some(_) => FakeIpvs::default(),
        })
    }
    fn sandboxes(&mut self) -> Result<BTreeSet<String>, BalancerError> {
        Ok(self.sandboxes.clone())
    }
    fn wire(&mut self, _node: &NodeAttachment) -> Result<Attached, BalancerError> {
        self.wired += 1;
        Ok(Attached {
            underlay: "eth0".into(),
            locals: BTreeSet::from([NODE, OTHER_LOCAL]),
            changed: self.wired == 1,
        })
    }
    fn mark_vips(&mut self, sandbox: &str, vips: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        self.marks.insert(sandbox.to_string(), vips.clone());
        Ok(())
    }
    fn tcp_timeout(&self) -> u32 {
        TCP_TIMEOUT
    }
    fn unwire(&mut self) -> Result<(), BalancerError> {
        self.unwired = true;
        Ok(())
    }
}

fn attachment() -> NodeAttachment {
    NodeAttachment {
        vtep: NODE,
        underlay_mtu: 1500,
        network: "ingress".into(),
        vni: 4096,
        subnet: "10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!()),
        network_mtu: 1450,
        gateway_mac: MacAddr([2, 0x5e, 198, 18, 0, 1]),
        cgroup_root: "/sys/fs/cgroup/shoal".into(),
        host_cgroup: None,
        peers: BTreeMap::new(),
    }
}

fn backend(last: u8) -> MeshBackend {
    MeshBackend {
        ip: Ipv4Addr::new(10, 0, 0, last),
        port: 80,
        mac: MacAddr([2, 0x42, 10, 0, 0, last]),
    }
}

fn spec(active: &[u8], lingering: &[u8]) -> BalancerSpec {
    BalancerSpec {
        locals: BTreeSet::from([NODE, OTHER_LOCAL]),
        services: vec![PublishedService {
            protocol: Protocol::Tcp,
            port: 8080,
            backends: active.iter().map(|l| backend(*l)).collect(),
            lingering: lingering.iter().map(|l| backend(*l)).collect(),
        }],
        vips: BTreeMap::new(),
    }
}

fn balancer(node: FakeNode) -> Balancer<IpvsBalancer<FakeNode>> {
    let ipvs = IpvsBalancer::new(node).unwrap_or_else(|e| panic!("{e}"));
    let mut balancer = Balancer::new(ipvs).unwrap_or_else(|e| panic!("{e}"));
    balancer
        .kernel()
        .attach(&attachment())
        .unwrap_or_else(|e| panic!("{e}"));
    balancer
}

fn key(addr: Ipv4Addr, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: super::super::Protocol::Tcp,
        addr: IpAddr::V4(addr),
        port,
    }
}

/// (address, port, weight, forward) of each real server of `service`.
fn servers(kernel: &mut FakeIpvs, service: &ServiceKey) -> Vec<(IpAddr, u16, u32, Forward)> {
    let mut list: Vec<_> = block_on(kernel.destinations(service))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|d| (d.addr, d.port, d.weight, d.forward))
        .collect();
    list.sort_by_key(|(addr, port, ..)| (*addr, *port));
    list
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

#[test]
fn a_published_port_is_one_maglev_service_per_node_address_masquerading_to_its_tasks() {
    let mut b = balancer(FakeNode::default());
    b.apply(&spec(&[2, 3], &[4]))
        .unwrap_or_else(|e| panic!("{e}"));
    let host = b.kernel().host();
    let services = block_on(host.services()).unwrap_or_else(|e| panic!("{e}"));
    let keys: BTreeSet<ServiceKey> = services.iter().map(|s| s.key).collect();
    assert_eq!(
        keys,
        BTreeSet::from([key(NODE, 8080), key(OTHER_LOCAL, 8080)])
    );
    for service in &services {
        assert_eq!(service.scheduler.label(), "mh (mh-fallback,mh-port)");
        assert_eq!(service.persistent, None);
    }
    for local in [NODE, OTHER_LOCAL] {
        assert_eq!(
            servers(host, &key(local, 8080)),
            vec![
                (ip(2), 80, 1, Forward::Masq),
                (ip(3), 80, 1, Forward::Masq),
                // Lingering: keeps its connections, gets no new ones.
                (ip(4), 80, 0, Forward::Masq),
            ]
        );
    }
}

#[test]
fn timeouts_are_set_at_attach_with_no_900_s_idle_cut() {
    let mut b = balancer(FakeNode::default());
    let timeouts = block_on(b.kernel().host().timeouts()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(timeouts.tcp, TCP_TIMEOUT);
    assert_eq!(timeouts.tcp_fin, 120);
    assert_eq!(timeouts.udp, 300);
}

#[test]
fn a_reapply_writes_nothing_and_a_withdrawn_backend_loses_its_real_server() {
    let mut b = balancer(FakeNode::default());
    b.apply(&spec(&[2, 3], &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    let writes = b.kernel().host().writes;
    let changes = b
        .apply(&spec(&[2, 3], &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(changes.is_empty());
    assert_eq!(b.kernel().host().writes, writes);

    b.apply(&spec(&[2], &[])).unwrap_or_else(|e| panic!("{e}"));
    let host = b.kernel().host();
    assert_eq!(
        servers(host, &key(NODE, 8080)),
        vec![(ip(2), 80, 1, Forward::Masq)]
    );
    // Two removals (one per node address), nothing else rewritten.
    assert_eq!(host.writes, writes + 2);

    let mut gone = spec(&[], &[]);
    gone.services.clear();
    b.apply(&gone).unwrap_or_else(|e| panic!("{e}"));
    let services = block_on(b.kernel().host().services()).unwrap_or_else(|e| panic!("{e}"));
    assert!(services.is_empty(), "{services:?}");
}

#[test]
fn a_local_address_that_goes_takes_its_services_along() {
    let mut b = balancer(FakeNode::default());
    b.apply(&spec(&[2], &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut fewer = spec(&[2], &[]);
    fewer.locals.remove(&OTHER_LOCAL);
    b.apply(&fewer).unwrap_or_else(|e| panic!("{e}"));
    let services = block_on(b.kernel().host().services()).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<ServiceKey> = services.iter().map(|s| s.key).collect();
    assert_eq!(keys, vec![key(NODE, 8080)]);
}

#[test]
fn a_vip_is_a_firewall_mark_service_in_every_sandbox_with_its_tasks_on_port_0() {
    let node = FakeNode {
        sandboxes: BTreeSet::from(["a".to_string(), "b".to_string()]),
        ..FakeNode::default()
    };
    let mut b = balancer(node);
    let vip = Ipv4Addr::new(10, 1, 0, 2);
    let mut want = spec(&[2], &[]);
    want.vips.insert(
        vip,
        BTreeSet::from([Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 4)]),
    );
    b.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    let mark = ServiceKey::Fwmark {
        mark: 0x0a01_0002,
        ipv6: false,
    };
    for name in ["a", "b"] {
        let kernel = b
            .kernel()
            .sandboxes()
            .get_mut(name)
            .unwrap_or_else(|| panic!("sandbox {name} not programmed"));
        assert_eq!(
            servers(kernel, &mark),
            vec![
                (IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)), 0, 1, Forward::Masq),
                (IpAddr::V4(Ipv4Addr::new(10, 1, 0, 4)), 0, 1, Forward::Masq),
            ]
        );
        let timeouts = block_on(kernel.timeouts()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(timeouts.tcp, TCP_TIMEOUT);
        assert_eq!(b.kernel().node().marks[name], BTreeSet::from([vip]));
    }

    // A sandbox created later gets every VIP at the next attach.
    b.kernel().node().sandboxes.insert("c".into());
    b.kernel()
        .attach(&attachment())
        .unwrap_or_else(|e| panic!("{e}"));
    let c = b
        .kernel()
        .sandboxes()
        .get_mut("c")
        .unwrap_or_else(|| panic!("sandbox c not programmed"));
    assert_eq!(servers(c, &mark).len(), 2);
    assert_eq!(b.kernel().node().marks["c"], BTreeSet::from([vip]));

    // A VIP that goes loses its marks and its services.
    want.vips.clear();
    b.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    for name in ["a", "b", "c"] {
        assert!(b.kernel().node().marks[name].is_empty());
        let kernel = b
            .kernel()
            .sandboxes()
            .get_mut(name)
            .unwrap_or_else(|| panic!("sandbox {name}"));
        assert!(block_on(kernel.services())
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
    }
}

#[test]
fn a_restarted_agent_takes_over_the_table_and_rewrites_nothing() {
    let mut first = balancer(FakeNode::default());
    first
        .apply(&spec(&[2, 3], &[4]))
        .unwrap_or_else(|e| panic!("{e}"));
    let table = first.kernel().host().clone();
    let writes = table.writes;

    let second = balancer(FakeNode {
        host_seed: Some(table),
        ..FakeNode::default()
    });
    let held = second.state().clone();
    assert_eq!(held.locals, BTreeSet::from([NODE, OTHER_LOCAL]));
    let port = PortKey {
        protocol: Protocol::Tcp,
        port: 8080,
    };
    let ips = |set: &BTreeSet<MeshBackend>| set.iter().map(|b| b.ip).collect::<Vec<_>>();
    assert_eq!(
        ips(&held.ports[&port].active),
        vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]
    );
    assert_eq!(
        ips(&held.ports[&port].lingering),
        vec![Ipv4Addr::new(10, 0, 0, 4)]
    );
    let mut second = second;
    second
        .apply(&spec(&[2, 3], &[4]))
        .unwrap_or_else(|e| panic!("{e}"));
    // The MACs (which IPVS does not hold) differ, so the port is
    // rewritten, but the kernel gets no write.
    assert_eq!(second.kernel().host().writes, writes);
}

#[test]
fn a_restarted_agent_reads_back_the_vips_a_sandbox_holds() {
    // What observe() reads from a sandbox at a restart: what was written.
    let node = FakeNode {
        sandboxes: BTreeSet::from(["a".to_string()]),
        ..FakeNode::default()
    };
    let mut first = balancer(node);
    let vip = Ipv4Addr::new(10, 1, 0, 2);
    let tasks = BTreeSet::from([Ipv4Addr::new(10, 1, 0, 3)]);
    let mut want = spec(&[2], &[]);
    want.vips.insert(vip, tasks.clone());
    first.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    let sandbox = first
        .kernel()
        .sandboxes()
        .get_mut("a")
        .unwrap_or_else(|| panic!("sandbox a not programmed"));
    let held = block_on(vips_in(sandbox)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held, BTreeMap::from([(vip, tasks)]));
}

#[test]
fn detach_removes_the_services_and_the_wiring() {
    let mut b = balancer(FakeNode::default());
    b.apply(&spec(&[2], &[])).unwrap_or_else(|e| panic!("{e}"));
    b.kernel().detach().unwrap_or_else(|e| panic!("{e}"));
    assert!(block_on(b.kernel().host().services())
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());
    assert!(b.kernel().node().unwired);
}
