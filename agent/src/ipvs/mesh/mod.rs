//! The load balancer on IPVS (`shoal agent --mesh ipvs`), for hosts where
//! eBPF is not allowed: the [`LoadBalancer`] of published ports (ingress)
//! and of virtual IPs (east-west) with no eBPF anywhere on its path.
//!
//! - Published ports: in the node's namespace, one IPVS service per
//!   (local address, port, protocol), scheduler `mh` with `mh-fallback` and
//!   `mh-port` (every node with the same backends picks the same one, a
//!   backend of weight 0 hands its share on), `sh` where the kernel lacks
//!   `mh`. Real servers are the tasks' ingress addresses, masquerade
//!   forwarding; a lingering backend has weight 0 (it keeps its
//!   connections, gets no new ones); a withdrawn one is removed (and, with
//!   `expire_nodest_conn`, its connections end).
//! - Virtual IPs: in every task sandbox, one firewall-mark service per VIP
//!   (nftables marks the VIP's packets with the VIP's own address as the
//!   mark), real servers the tasks' addresses with port 0 (the port the
//!   caller asked for), masquerade: the caller's own sandbox translates, so
//!   replies come straight back.
//! - Timeouts set at attach: TCP as long as the kernel's conntrack keeps an
//!   established flow (no 900 s idle cut), FIN 120 s, UDP 300 s.
//!
//! The node's wiring (the link into the ingress network, routes, SNAT,
//! sysctls, the sandboxes' marks) is the [`IpvsNode`] boundary: [`node`]
//! does it for real, the tests use a fake. This module never touches the
//! kernel itself.

pub mod nat;
pub mod node;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::balancer::{
    Attached, BalancerError, Counters, Limits, LoadBalancer, MeshBackend, NodeAttachment,
    PortBackends, PortKey, Programmed, Protocol,
};
use shoal_control::objects::MacAddr;

use super::{
    apply_service, apply_timeouts, Destination, Forward, IpvsError, IpvsKernel, Scheduler, Service,
    ServiceKey, Timeouts, VirtualService,
};

/// How much one entry holds: IPVS itself has no small limit; these bound
/// the work of one write.
pub const LIMITS: Limits = Limits {
    backends_per_port: 4096,
    tasks_per_vip: 4096,
};

/// The IPVS timeouts the mesh sets. TCP: `tcp` (the caller passes the
/// kernel's conntrack timeout for established flows).
pub fn timeouts(tcp: u32) -> Timeouts {
    Timeouts {
        tcp,
        tcp_fin: 120,
        udp: 300,
    }
}

/// The node an [`IpvsBalancer`] programs: its namespaces and wiring.
pub trait IpvsNode: Send {
    type Kernel: IpvsKernel + Send;
    /// IPVS of the node's own namespace (`None`) or of task sandbox
    /// `sandbox`; requests run on `rt`.
    fn open(
        &mut self,
        rt: &tokio::runtime::Runtime,
        sandbox: Option<&str>,
    ) -> Result<Self::Kernel, IpvsError>;
    /// The task sandboxes on this node now.
    fn sandboxes(&mut self) -> Result<BTreeSet<String>, BalancerError>;
    /// Wires the node (link, routes, forwarding, SNAT); cheap when nothing
    /// changed.
    fn wire(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError>;
    /// Marks packets to `vips` in `sandbox` for their firewall-mark
    /// services (replacing the marks set before).
    fn mark_vips(&mut self, sandbox: &str, vips: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError>;
    /// TCP idle timeout to set: the kernel's for established flows.
    fn tcp_timeout(&self) -> u32;
    /// Takes the wiring down.
    fn unwire(&mut self) -> Result<(), BalancerError>;
}

/// The firewall mark (and IPVS service) of a virtual IP: its address.
pub fn vip_mark(vip: Ipv4Addr) -> u32 {
    u32::from(vip)
}

/// A published port's service on one local address.
pub fn port_service(local: Ipv4Addr, port: PortKey, scheduler: &Scheduler) -> Service {
    Service {
        key: ServiceKey::Addr {
            protocol: ipvs_protocol(port.protocol),
            addr: IpAddr::V4(local),
            port: port.port,
        },
        scheduler: scheduler.clone(),
        persistent: None,
        one_packet: false,
        netmask: u32::MAX,
    }
}

/// A published port's real servers: active ones of weight 1, lingering
/// ones of weight 0.
pub fn port_servers(backends: &PortBackends) -> Vec<Destination> {
    let server = |b: &MeshBackend, weight: u32| Destination {
        weight,
        ..Destination::new(IpAddr::V4(b.ip), b.port, Forward::Masq)
    };
    let mut servers: Vec<Destination> = backends.active.iter().map(|b| server(b, 1)).collect();
    for b in &backends.lingering {
        if !servers
            .iter()
            .any(|s| s.addr == IpAddr::V4(b.ip) && s.port == b.port)
        {
            servers.push(server(b, 0));
        }
    }
    servers
}

/// A virtual IP's firewall-mark service and its tasks.
pub fn vip_service(
    vip: Ipv4Addr,
    tasks: &BTreeSet<Ipv4Addr>,
    scheduler: &Scheduler,
) -> VirtualService {
    VirtualService {
        service: Service {
            key: ServiceKey::Fwmark {
                mark: vip_mark(vip),
                ipv6: false,
            },
            scheduler: scheduler.clone(),
            persistent: None,
            one_packet: false,
            netmask: u32::MAX,
        },
        destinations: tasks
            .iter()
            .map(|t| Destination::new(IpAddr::V4(*t), 0, Forward::Masq))
            .collect(),
    }
}

fn ipvs_protocol(p: Protocol) -> super::Protocol {
    match p {
        Protocol::Tcp => super::Protocol::Tcp,
        Protocol::Udp => super::Protocol::Udp,
    }
}

/// The mesh's protocol of an IPVS service; none for SCTP, which published
/// ports do not have.
fn mesh_protocol(p: super::Protocol) -> Option<Protocol> {
    match p {
        super::Protocol::Tcp => Some(Protocol::Tcp),
        super::Protocol::Udp => Some(Protocol::Udp),
        super::Protocol::Sctp => None,
    }
}

/// The virtual IPs (firewall-mark services) in one sandbox's IPVS, and
/// their tasks.
pub async fn vips_in<K: IpvsKernel>(
    kernel: &mut K,
) -> Result<BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>, IpvsError> {
    let mut vips = BTreeMap::new();
    for service in kernel.services().await? {
        let ServiceKey::Fwmark { mark, ipv6: false } = service.key else {
            continue;
        };
        let tasks: BTreeSet<Ipv4Addr> = kernel
            .destinations(&service.key)
            .await?
            .iter()
            .filter_map(|d| match d.addr {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            })
            .collect();
        vips.insert(Ipv4Addr::from(mark), tasks);
    }
    Ok(vips)
}

/// The preferred scheduler: Maglev with fallback and port.
pub const MAGLEV: Scheduler = Scheduler::Maglev {
    fallback: true,
    port: true,
};
/// Where the kernel has no `mh`: source hashing with fallback and port.
pub const SOURCE_HASH: Scheduler = Scheduler::SourceHash {
    fallback: true,
    port: true,
};

/// The IPVS load balancer of a node.
pub struct IpvsBalancer<N: IpvsNode> {
    rt: tokio::runtime::Runtime,
    node: N,
    host: N::Kernel,
    sandboxes: BTreeMap<String, N::Kernel>,
    scheduler: Scheduler,
    locals: BTreeSet<Ipv4Addr>,
    ports: BTreeMap<PortKey, PortBackends>,
    vips: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
}

impl<N: IpvsNode> IpvsBalancer<N> {
    /// A balancer on `node`; its namespace's IPVS is opened at once, so a
    /// kernel without IPVS is refused here ([`IpvsError::NoIpvs`]).
    pub fn new(mut node: N) -> Result<Self, BalancerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BalancerError::Attach(format!("cannot start the IPVS runtime: {e}")))?;
        let host = node.open(&rt, None)?;
        Ok(IpvsBalancer {
            rt,
            node,
            host,
            sandboxes: BTreeMap::new(),
            scheduler: MAGLEV,
            locals: BTreeSet::new(),
            ports: BTreeMap::new(),
            vips: BTreeMap::new(),
        })
    }

    pub fn node(&mut self) -> &mut N {
        &mut self.node
    }

    /// The IPVS of the node's namespace.
    pub fn host(&mut self) -> &mut N::Kernel {
        &mut self.host
    }

    /// The IPVS of each task sandbox programmed.
    pub fn sandboxes(&mut self) -> &mut BTreeMap<String, N::Kernel> {
        &mut self.sandboxes
    }

    /// The scheduler in use (`sh` once the kernel refused `mh`).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Writes one published port's service on `local`; falls back to `sh`
    /// when the kernel has no `mh` scheduler.
    fn write_port(&mut self, local: Ipv4Addr, port: PortKey) -> Result<(), BalancerError> {
        let servers = port_servers(self.ports.get(&port).unwrap_or(&PortBackends::default()));
        loop {
            let desired = VirtualService {
                service: port_service(local, port, &self.scheduler),
                destinations: servers.clone(),
            };
            match self.rt.block_on(apply_service(&mut self.host, &desired)) {
                Err(IpvsError::Kernel { op, errno, .. })
                    if op == "NEW_SERVICE" && errno == libc::ENOENT && self.scheduler == MAGLEV =>
                {
                    tracing::warn!(
                        "mesh: this kernel has no IPVS `mh` scheduler (ip_vs_mh); published \
                         ports use `sh` (source hashing with port)"
                    );
                    self.scheduler = SOURCE_HASH;
                }
                other => return other.map(|_| ()).map_err(BalancerError::from),
            }
        }
    }

    fn remove_host_service(&mut self, key: ServiceKey) -> Result<(), BalancerError> {
        match self.rt.block_on(self.host.remove_service(&key)) {
            Err(e) if e.is_missing() => Ok(()),
            other => Ok(other?),
        }
    }

    /// Programs `sandbox` with every virtual IP (marks and services).
    fn program_sandbox(&mut self, sandbox: &str) -> Result<(), BalancerError> {
        let vips: BTreeSet<Ipv4Addr> = self.vips.keys().copied().collect();
        self.node.mark_vips(sandbox, &vips)?;
        let Some(kernel) = self.sandboxes.get_mut(sandbox) else {
            return Ok(());
        };
        let scheduler = &self.scheduler;
        let wanted: Vec<VirtualService> = self
            .vips
            .iter()
            .map(|(vip, tasks)| vip_service(*vip, tasks, scheduler))
            .collect();
        self.rt.block_on(async {
            let present = kernel.services().await?;
            for service in &wanted {
                apply_service(kernel, service).await?;
            }
            for stale in present
                .iter()
                .filter(|s| !wanted.iter().any(|w| w.service.key == s.key))
            {
                kernel.remove_service(&stale.key).await?;
            }
            Ok::<_, IpvsError>(())
        })?;
        Ok(())
    }

    /// The virtual IPs an earlier agent programmed, as the sandboxes hold
    /// them (each got all of them), so a restart removes none before the
    /// first apply.
    fn observe_vips(&mut self) -> Result<BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>, BalancerError> {
        let mut vips = BTreeMap::new();
        for name in self.node.sandboxes()? {
            let Ok(mut kernel) = self.node.open(&self.rt, Some(&name)) else {
                continue;
            };
            // A sandbox made after the earlier agent stopped holds none.
            if let Ok(found) = self.rt.block_on(vips_in(&mut kernel)) {
                for (vip, tasks) in found {
                    vips.entry(vip).or_insert_with(BTreeSet::new).extend(tasks);
                }
            }
        }
        Ok(vips)
    }

    /// Opens and programs new sandboxes; forgets those gone. Whether any
    /// changed. A sandbox that cannot be programmed (one going away as we
    /// look) is tried again at the next attach; it never holds up the
    /// published ports.
    fn follow_sandboxes(&mut self) -> Result<bool, BalancerError> {
        let now = self.node.sandboxes()?;
        let before = self.sandboxes.len();
        self.sandboxes.retain(|name, _| now.contains(name));
        let mut changed = before != self.sandboxes.len();
        let tcp = self.node.tcp_timeout();
        for name in now {
            if self.sandboxes.contains_key(&name) {
                continue;
            }
            let opened = self
                .node
                .open(&self.rt, Some(&name))
                .and_then(|mut kernel| {
                    self.rt
                        .block_on(apply_timeouts(&mut kernel, timeouts(tcp)))
                        .map(|_| kernel)
                });
            let kernel = match opened {
                Ok(kernel) => kernel,
                Err(e) => {
                    tracing::warn!("mesh: sandbox {name}: {e}; trying again");
                    continue;
                }
            };
            self.sandboxes.insert(name.clone(), kernel);
            if let Err(e) = self.program_sandbox(&name) {
                tracing::warn!("mesh: sandbox {name}: {e}; trying again");
                self.sandboxes.remove(&name);
                continue;
            }
            changed = true;
        }
        Ok(changed)
    }
}

impl<N: IpvsNode> LoadBalancer for IpvsBalancer<N> {
    /// The published ports and local addresses in the node's IPVS table
    /// (an earlier agent's). Virtual IPs are rewritten at the first apply.
    fn observe(&mut self) -> Result<Programmed, BalancerError> {
        let services = self.rt.block_on(self.host.services())?;
        let mut held = Programmed::default();
        for service in services {
            let ServiceKey::Addr {
                protocol,
                addr: IpAddr::V4(local),
                port,
            } = service.key
            else {
                continue;
            };
            let Some(protocol) = mesh_protocol(protocol) else {
                continue;
            };
            if matches!(service.scheduler, Scheduler::SourceHash { .. }) {
                self.scheduler = SOURCE_HASH;
            }
            held.locals.insert(local);
            let key = PortKey { protocol, port };
            if held.ports.contains_key(&key) {
                continue;
            }
            let servers = self.rt.block_on(self.host.destinations(&service.key))?;
            let mut backends = PortBackends::default();
            for server in servers {
                let IpAddr::V4(ip) = server.addr else {
                    continue;
                };
                let backend = MeshBackend {
                    ip,
                    port: server.port,
                    mac: MacAddr([0; 6]),
                };
                if server.weight > 0 {
                    backends.active.insert(backend);
                } else {
                    backends.lingering.insert(backend);
                }
            }
            held.ports.insert(key, backends);
        }
        held.vips = self.observe_vips()?;
        self.locals = held.locals.clone();
        self.ports = held.ports.clone();
        self.vips = held.vips.clone();
        Ok(held)
    }

    fn attach(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError> {
        let mut attached = self.node.wire(node)?;
        let tcp = self.node.tcp_timeout();
        let set = self
            .rt
            .block_on(apply_timeouts(&mut self.host, timeouts(tcp)))?;
        if let Some(change) = set {
            tracing::info!("mesh: IPVS {change}");
        }
        attached.changed |= self.follow_sandboxes()?;
        Ok(attached)
    }

    fn detach(&mut self) -> Result<(), BalancerError> {
        let keys: Vec<ServiceKey> = self
            .locals
            .iter()
            .flat_map(|l| {
                self.ports
                    .keys()
                    .map(|p| port_service(*l, *p, &self.scheduler).key)
            })
            .collect();
        for key in keys {
            self.remove_host_service(key)?;
        }
        self.locals.clear();
        self.ports.clear();
        self.vips.clear();
        self.sandboxes.clear();
        self.node.unwire()
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    fn put_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        self.locals.insert(addr);
        let ports: Vec<PortKey> = self.ports.keys().copied().collect();
        for port in ports {
            self.write_port(addr, port)?;
        }
        Ok(())
    }

    fn delete_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        self.locals.remove(&addr);
        let keys: Vec<ServiceKey> = self
            .ports
            .keys()
            .map(|p| port_service(addr, *p, &self.scheduler).key)
            .collect();
        for key in keys {
            self.remove_host_service(key)?;
        }
        Ok(())
    }

    fn put_port(&mut self, port: PortKey, backends: &PortBackends) -> Result<(), BalancerError> {
        self.ports.insert(port, backends.clone());
        let locals: Vec<Ipv4Addr> = self.locals.iter().copied().collect();
        for local in locals {
            self.write_port(local, port)?;
        }
        Ok(())
    }

    fn delete_port(&mut self, port: PortKey) -> Result<(), BalancerError> {
        self.ports.remove(&port);
        let keys: Vec<ServiceKey> = self
            .locals
            .iter()
            .map(|l| port_service(*l, port, &self.scheduler).key)
            .collect();
        for key in keys {
            self.remove_host_service(key)?;
        }
        Ok(())
    }

    fn put_vip(&mut self, vip: Ipv4Addr, tasks: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        let new_vip = !self.vips.contains_key(&vip);
        self.vips.insert(vip, tasks.clone());
        let marks: BTreeSet<Ipv4Addr> = self.vips.keys().copied().collect();
        let service = vip_service(vip, tasks, &self.scheduler);
        let names: Vec<String> = self.sandboxes.keys().cloned().collect();
        for name in names {
            if new_vip {
                self.node.mark_vips(&name, &marks)?;
            }
            if let Some(kernel) = self.sandboxes.get_mut(&name) {
                self.rt.block_on(apply_service(kernel, &service))?;
            }
        }
        Ok(())
    }

    fn delete_vip(&mut self, vip: Ipv4Addr) -> Result<(), BalancerError> {
        self.vips.remove(&vip);
        let marks: BTreeSet<Ipv4Addr> = self.vips.keys().copied().collect();
        let key = ServiceKey::Fwmark {
            mark: vip_mark(vip),
            ipv6: false,
        };
        let names: Vec<String> = self.sandboxes.keys().cloned().collect();
        for name in names {
            self.node.mark_vips(&name, &marks)?;
            if let Some(kernel) = self.sandboxes.get_mut(&name) {
                match self.rt.block_on(kernel.remove_service(&key)) {
                    Err(e) if e.is_missing() => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    fn counters(&mut self) -> Result<Counters, BalancerError> {
        Ok(Vec::new())
    }
}
