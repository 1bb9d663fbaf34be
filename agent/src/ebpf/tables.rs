//! The balancer's entries in the eBPF maps' layouts: a port's table (the
//! small one, or the big one for more than `MAX_BACKENDS` backends), its
//! liveness keys, a virtual IP's tasks, and back again.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use shoal_control::objects::MacAddr;
use shoal_ebpf_common::mesh::{
    wire_addr, wire_port, Backend, BigServiceTable, LiveKey, ServiceKey, ServiceTable, VipBackends,
    BIG_MAGLEV_SLOTS, MAGLEV_SLOTS, MAX_BACKENDS, MAX_BIG_BACKENDS, MAX_VIP_BACKENDS, SERVICE_BIG,
};

use crate::balancer::{maglev, MeshBackend, PortBackends, PortKey, Protocol};

/// The map key of a published port.
pub fn service_key(port: PortKey) -> ServiceKey {
    ServiceKey::new(wire_port(port.port), port.protocol.number())
}

/// The published port of a map key, if its protocol is one the mesh serves.
pub fn port_key(key: &ServiceKey) -> Option<PortKey> {
    Some(PortKey {
        protocol: Protocol::from_number(key.proto)?,
        port: u16::from_be(key.port),
    })
}

pub fn wire_backend(b: &MeshBackend) -> Backend {
    Backend {
        addr: wire_addr(b.ip.octets()),
        port: wire_port(b.port),
        mac: b.mac.octets(),
    }
}

/// The backend a table slot holds, back in userspace terms.
pub fn mesh_backend(b: &Backend) -> MeshBackend {
    MeshBackend {
        ip: Ipv4Addr::from(b.addr.to_ne_bytes()),
        port: u16::from_be(b.port),
        mac: MacAddr(b.mac),
    }
}

/// A port's tables: the small one, and the big one when the port has more
/// active backends than the small one holds (the small one then only says
/// so).
pub struct PortTables {
    pub small: Box<ServiceTable>,
    pub big: Option<Box<BigServiceTable>>,
}

/// The tables for `active` (at most [`MAX_BIG_BACKENDS`] are used, in their
/// sorted order).
pub fn port_tables(active: &BTreeSet<MeshBackend>) -> PortTables {
    let used: BTreeSet<MeshBackend> = active.iter().take(MAX_BIG_BACKENDS).cloned().collect();
    let mut small = Box::new(ServiceTable {
        count: 0,
        flags: 0,
        backends: [Backend::default(); MAX_BACKENDS],
        slots: [0; MAGLEV_SLOTS],
    });
    if used.len() > MAX_BACKENDS {
        let mut big = Box::new(BigServiceTable {
            count: used.len() as u32,
            flags: 0,
            backends: [Backend::default(); MAX_BIG_BACKENDS],
            slots: [0; BIG_MAGLEV_SLOTS],
        });
        for (slot, b) in big.backends.iter_mut().zip(&used) {
            *slot = wire_backend(b);
        }
        for (slot, backend) in maglev::port_table(&used, BIG_MAGLEV_SLOTS)
            .into_iter()
            .enumerate()
        {
            big.slots[slot] = backend;
        }
        small.flags = SERVICE_BIG;
        return PortTables {
            small,
            big: Some(big),
        };
    }
    small.count = used.len() as u32;
    for (slot, b) in small.backends.iter_mut().zip(&used) {
        *slot = wire_backend(b);
    }
    for (slot, backend) in maglev::port_table(&used, MAGLEV_SLOTS)
        .into_iter()
        .enumerate()
    {
        small.slots[slot] = backend;
    }
    PortTables { small, big: None }
}

/// The active backends a small table (or, when it says so, `big`) holds.
pub fn table_backends(
    small: &ServiceTable,
    big: Option<&BigServiceTable>,
) -> BTreeSet<MeshBackend> {
    match big {
        Some(big) if small.flags & SERVICE_BIG != 0 => big.backends
            [..(big.count as usize).min(MAX_BIG_BACKENDS)]
            .iter()
            .map(mesh_backend)
            .collect(),
        _ => small.backends[..(small.count as usize).min(MAX_BACKENDS)]
            .iter()
            .map(mesh_backend)
            .collect(),
    }
}

/// The liveness keys of a port: every backend whose flows may go on.
pub fn live_keys(key: ServiceKey, backends: &PortBackends) -> BTreeSet<LiveKey> {
    backends
        .active
        .iter()
        .chain(&backends.lingering)
        .map(|b| LiveKey::new(key, &wire_backend(b)))
        .collect()
}

/// A virtual IP's value (at most [`MAX_VIP_BACKENDS`] tasks).
pub fn vip_value(tasks: &BTreeSet<Ipv4Addr>) -> Box<VipBackends> {
    let mut value = Box::new(VipBackends {
        count: 0,
        addrs: [0; MAX_VIP_BACKENDS],
    });
    for (slot, addr) in value.addrs.iter_mut().zip(tasks) {
        *slot = wire_addr(addr.octets());
        value.count += 1;
    }
    value
}

/// The tasks of a virtual IP's value.
pub fn vip_tasks(value: &VipBackends) -> BTreeSet<Ipv4Addr> {
    value.addrs[..(value.count as usize).min(MAX_VIP_BACKENDS)]
        .iter()
        .map(|a| Ipv4Addr::from(a.to_ne_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_round_trip_through_the_numbers_the_programs_use() {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(Protocol::from_number(proto.number()), Some(proto));
        }
        assert_eq!(Protocol::Tcp.number(), shoal_ebpf_common::mesh::IPPROTO_TCP);
        assert_eq!(Protocol::Udp.number(), shoal_ebpf_common::mesh::IPPROTO_UDP);
        assert_eq!(Protocol::from_number(1), None);
    }

    fn backends(n: u32) -> BTreeSet<MeshBackend> {
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

    #[test]
    fn up_to_the_small_limit_one_table_holds_the_port() {
        let tables = port_tables(&backends(128));
        assert!(tables.big.is_none());
        assert_eq!((tables.small.count, tables.small.flags), (128, 0));
        assert!(tables.small.slots.iter().all(|&s| s < 128));
        assert_eq!(table_backends(&tables.small, None), backends(128));
    }

    #[test]
    fn more_backends_go_to_the_big_table_which_the_small_one_points_at() {
        let tables = port_tables(&backends(300));
        let big = tables.big.as_deref().expect("a big table");
        assert_eq!((tables.small.count, tables.small.flags), (0, SERVICE_BIG));
        assert_eq!(big.count, 300);
        let used: BTreeSet<u16> = big.slots.iter().copied().collect();
        assert_eq!(used.len(), 300, "every backend has slots");
        assert_eq!(table_backends(&tables.small, Some(big)), backends(300));
    }

    #[test]
    fn keys_and_values_round_trip() {
        let port = PortKey {
            protocol: Protocol::Udp,
            port: 9053,
        };
        assert_eq!(port_key(&service_key(port)), Some(port));
        let b = backends(1).pop_first().expect("one");
        assert_eq!(mesh_backend(&wire_backend(&b)), b);
        let tasks: BTreeSet<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(vip_tasks(&vip_value(&tasks)), tasks);
    }
}
