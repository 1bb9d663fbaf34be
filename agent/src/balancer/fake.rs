//! [`FakeBalancer`]: an in-memory [`LoadBalancer`] that records what it was
//! told and answers which backend a new flow would get, as the eBPF data
//! path picks it (same Maglev tables, same flow hash).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use shoal_ebpf_common::mesh::{
    flow_hash, wire_addr, wire_port, BIG_MAGLEV_SLOTS, MAGLEV_SLOTS, MAX_BACKENDS,
    MAX_BIG_BACKENDS, MAX_VIP_BACKENDS,
};

use super::{
    maglev, Attached, BalancerError, Counters, Limits, LoadBalancer, NodeAttachment, PortBackends,
    PortKey, Programmed, Protocol,
};

/// An in-memory balancer.
#[derive(Debug)]
pub struct FakeBalancer {
    pub held: Programmed,
    /// Every attachment asked for, in order.
    pub attached: Vec<NodeAttachment>,
    /// What `attach` answers.
    pub underlay: Attached,
    pub detached: bool,
    /// Writes of ports, VIPs and local addresses.
    pub writes: usize,
    pub limits: Limits,
    /// Ports whose writes and removals fail (as a full map would).
    pub refused_ports: BTreeSet<PortKey>,
    /// Writes and removals refused so far.
    pub refusals: usize,
}

impl Default for FakeBalancer {
    fn default() -> Self {
        FakeBalancer {
            held: Programmed::default(),
            attached: Vec::new(),
            underlay: Attached {
                underlay: "eth0".into(),
                locals: BTreeSet::from([Ipv4Addr::new(198, 18, 0, 1)]),
                changed: false,
            },
            detached: false,
            writes: 0,
            refused_ports: BTreeSet::new(),
            refusals: 0,
            limits: Limits {
                backends_per_port: MAX_BIG_BACKENDS,
                tasks_per_vip: MAX_VIP_BACKENDS,
            },
        }
    }
}

impl FakeBalancer {
    /// Fails if `port` is refused.
    fn refuse(&mut self, port: PortKey) -> Result<(), BalancerError> {
        if self.refused_ports.contains(&port) {
            self.refusals += 1;
            return Err(BalancerError::PortRefused {
                port,
                reason: "the fake refuses it".into(),
            });
        }
        Ok(())
    }

    /// The backend a new flow from `client:client_port` to `node`'s
    /// published `port` gets, if the port has any.
    pub fn pick(
        &self,
        client: Ipv4Addr,
        client_port: u16,
        node: Ipv4Addr,
        port: u16,
        protocol: Protocol,
    ) -> Option<(Ipv4Addr, u16)> {
        let backends = self.held.ports.get(&PortKey { protocol, port })?;
        let slots = if backends.active.len() > MAX_BACKENDS {
            BIG_MAGLEV_SLOTS
        } else {
            MAGLEV_SLOTS
        };
        let table = maglev::port_table(&backends.active, slots);
        let hash = flow_hash(
            wire_addr(client.octets()),
            wire_port(client_port),
            wire_addr(node.octets()),
            wire_port(port),
            protocol.number(),
        );
        let index = *table.get(hash as usize & (slots - 1))?;
        let b = backends.active.iter().nth(usize::from(index))?;
        Some((b.ip, b.port))
    }
}

impl LoadBalancer for FakeBalancer {
    fn observe(&mut self) -> Result<Programmed, BalancerError> {
        Ok(self.held.clone())
    }
    fn attach(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError> {
        let changed = self.attached.last() != Some(node);
        self.attached.push(node.clone());
        Ok(Attached {
            changed,
            ..self.underlay.clone()
        })
    }
    fn detach(&mut self) -> Result<(), BalancerError> {
        self.held = Programmed::default();
        self.detached = true;
        Ok(())
    }
    fn limits(&self) -> Limits {
        self.limits
    }
    fn put_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        self.writes += 1;
        self.held.locals.insert(addr);
        Ok(())
    }
    fn delete_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        self.writes += 1;
        self.held.locals.remove(&addr);
        Ok(())
    }
    fn put_port(&mut self, port: PortKey, backends: &PortBackends) -> Result<(), BalancerError> {
        self.refuse(port)?;
        self.writes += 1;
        self.held.ports.insert(port, backends.clone());
        Ok(())
    }
    fn delete_port(&mut self, port: PortKey) -> Result<(), BalancerError> {
        self.refuse(port)?;
        self.writes += 1;
        self.held.ports.remove(&port);
        Ok(())
    }
    fn put_vip(&mut self, vip: Ipv4Addr, tasks: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        self.writes += 1;
        self.held.vips.insert(vip, tasks.clone());
        Ok(())
    }
    fn delete_vip(&mut self, vip: Ipv4Addr) -> Result<(), BalancerError> {
        self.writes += 1;
        self.held.vips.remove(&vip);
        Ok(())
    }
    fn counters(&mut self) -> Result<Counters, BalancerError> {
        Ok(Vec::new())
    }
}
