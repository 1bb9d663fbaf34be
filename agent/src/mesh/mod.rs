//! The routing mesh: a layer-4 load balancer behind one trait.
//!
//! [`MeshSpec`] says what this node serves: its local underlay addresses and,
//! for each published port, the backends (task address, target port, MAC on
//! the ingress network). [`Mesh::apply`] turns it into map contents (a Maglev
//! table per port, the set of live backends, the local addresses) and writes
//! only what differs through a [`MeshKernel`]: the eBPF maps
//! ([`crate::ebpf::EbpfMesh`]) or, in tests, [`FakeMesh`]. An IPVS backend
//! would implement the same trait with virtual services and real servers.
//!
//! Order matters for flows in progress: new tables and live entries are
//! written before stale ones are removed, so a flow never finds its backend
//! missing from the live set while it still serves; a backend leaving the
//! live set makes its tracked flows reset at their next packet.

pub mod host;
pub mod maglev;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use shoal_control::objects::MacAddr;
use shoal_ebpf_common::mesh::{
    wire_addr, wire_port, Backend, LiveKey, ServiceKey, ServiceTable, IPPROTO_TCP, IPPROTO_UDP,
    MAGLEV_SLOTS, MAX_BACKENDS,
};

/// Which load balancer a node runs, chosen per node (`shoal agent --mesh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MeshMode {
    /// The eBPF data path: ingress on published ports, virtual IPs at
    /// `connect()`.
    #[default]
    Ebpf,
    /// No load balancer on this node: its addresses do not serve published
    /// ports, its tasks reach services by task address (`tasks.NAME`)
    /// only, and replies of its tasks to ingress clients have no way back
    /// (keep published services off it with a constraint). For hosts where
    /// eBPF is not allowed, until the IPVS backend of [`MeshKernel`] exists.
    Off,
}

/// The transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        }
    }
}

/// One backend of a published port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MeshBackend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub mac: MacAddr,
}

/// A published port and its backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedService {
    pub protocol: Proto,
    pub port: u16,
    pub backends: Vec<MeshBackend>,
    /// Backends that keep the flows they have but get no new ones: those of
    /// a node whose agent is down or restarting, whose tasks may well still
    /// serve. Only a withdrawn backend (its task stopped) has its flows reset.
    #[serde(default)]
    pub lingering: Vec<MeshBackend>,
}

/// What this node's mesh serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshSpec {
    /// Addresses whose published ports are served (the underlay's).
    pub locals: BTreeSet<Ipv4Addr>,
    pub services: Vec<PublishedService>,
}

/// What the kernel's tables hold, as the [`Mesh`] keeps track of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshState {
    /// Each published port's backends, as written in its table.
    pub services: BTreeMap<ServiceKey, BTreeSet<MeshBackend>>,
    pub live: BTreeSet<LiveKey>,
    pub locals: BTreeSet<u32>,
}

/// The kernel boundary: the load balancer's tables.
pub trait MeshKernel {
    /// What the tables hold now (read once, when a [`Mesh`] starts).
    fn observe(&mut self) -> Result<MeshState, MeshError>;
    fn put_service(&mut self, key: ServiceKey, table: &ServiceTable) -> Result<(), MeshError>;
    fn delete_service(&mut self, key: ServiceKey) -> Result<(), MeshError>;
    fn put_live(&mut self, key: LiveKey) -> Result<(), MeshError>;
    fn delete_live(&mut self, key: LiveKey) -> Result<(), MeshError>;
    fn put_local(&mut self, addr: u32) -> Result<(), MeshError>;
    fn delete_local(&mut self, addr: u32) -> Result<(), MeshError>;
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
}

/// How many writes an update made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshChanges {
    pub services_written: usize,
    pub services_deleted: usize,
    pub live_added: usize,
    pub live_removed: usize,
}

impl MeshChanges {
    pub fn is_empty(&self) -> bool {
        *self == MeshChanges::default()
    }
}

/// The key of a published port.
pub fn service_key(protocol: Proto, port: u16) -> ServiceKey {
    ServiceKey::new(wire_port(port), protocol.number())
}

/// The backends of each port `spec` asks for. Ports listed twice are merged;
/// a port with only lingering backends gets an empty table.
pub fn desired_ports(spec: &MeshSpec) -> BTreeMap<ServiceKey, BTreeSet<MeshBackend>> {
    let mut ports: BTreeMap<ServiceKey, BTreeSet<MeshBackend>> = BTreeMap::new();
    for service in &spec.services {
        ports
            .entry(service_key(service.protocol, service.port))
            .or_default()
            .extend(service.backends.iter().cloned());
    }
    ports
}

/// Every backend whose flows may go on: the active ones (as far as the
/// table holds them) and the lingering ones.
fn desired_live(
    spec: &MeshSpec,
    ports: &BTreeMap<ServiceKey, BTreeSet<MeshBackend>>,
) -> BTreeSet<LiveKey> {
    let mut live: BTreeSet<LiveKey> = ports
        .iter()
        .flat_map(|(key, backends)| {
            backends
                .iter()
                .take(MAX_BACKENDS)
                .map(|b| LiveKey::new(*key, &wire_backend(b)))
        })
        .collect();
    for service in &spec.services {
        let key = service_key(service.protocol, service.port);
        live.extend(
            service
                .lingering
                .iter()
                .map(|b| LiveKey::new(key, &wire_backend(b))),
        );
    }
    live
}

fn wire_backend(b: &MeshBackend) -> Backend {
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

/// A port's table for `backends` (at most [`MAX_BACKENDS`], the lowest
/// addresses win): the backends in order, and the Maglev slots over them.
pub fn service_table(backends: &BTreeSet<MeshBackend>) -> ServiceTable {
    let mut table = ServiceTable {
        count: 0,
        flags: 0,
        backends: [Backend::default(); MAX_BACKENDS],
        slots: [0; MAGLEV_SLOTS],
    };
    let used: Vec<&MeshBackend> = backends.iter().take(MAX_BACKENDS).collect();
    table.count = used.len() as u32;
    for (i, b) in used.iter().enumerate() {
        table.backends[i] = wire_backend(b);
    }
    let names: Vec<String> = used
        .iter()
        .map(|b| format!("{}:{}", b.ip, b.port))
        .collect();
    for (slot, backend) in maglev::table(&names).into_iter().enumerate() {
        table.slots[slot] = backend;
    }
    table
}

/// The load balancer: a kernel backend and what it holds. Updates compare
/// each port's backends with what was written and write only the ports that
/// changed, so one service change costs one table write whatever the number
/// of services.
pub struct Mesh<K: MeshKernel> {
    kernel: K,
    state: MeshState,
}

impl<K: MeshKernel> Mesh<K> {
    /// Starts from what the kernel already holds (an earlier agent's tables).
    pub fn new(mut kernel: K) -> Result<Self, MeshError> {
        let state = kernel.observe()?;
        Ok(Mesh { kernel, state })
    }

    pub fn kernel(&mut self) -> &mut K {
        &mut self.kernel
    }

    pub fn state(&self) -> &MeshState {
        &self.state
    }

    /// Brings the tables to `spec`.
    pub fn apply(&mut self, spec: &MeshSpec) -> Result<MeshChanges, MeshError> {
        let want = desired_ports(spec);
        let want_live = desired_live(spec, &want);
        let mut changes = MeshChanges::default();
        let locals: BTreeSet<u32> = spec.locals.iter().map(|a| wire_addr(a.octets())).collect();
        for addr in locals.difference(&self.state.locals.clone()) {
            self.kernel.put_local(*addr)?;
            self.state.locals.insert(*addr);
        }
        for key in want_live.difference(&self.state.live.clone()) {
            self.kernel.put_live(*key)?;
            self.state.live.insert(*key);
            changes.live_added += 1;
        }
        for (key, backends) in &want {
            if self.state.services.get(key) != Some(backends) {
                self.kernel.put_service(*key, &service_table(backends))?;
                self.state.services.insert(*key, backends.clone());
                changes.services_written += 1;
            }
        }
        for key in self.state.live.clone().difference(&want_live) {
            self.kernel.delete_live(*key)?;
            self.state.live.remove(key);
            changes.live_removed += 1;
        }
        let gone: Vec<ServiceKey> = self
            .state
            .services
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.kernel.delete_service(key)?;
            self.state.services.remove(&key);
            changes.services_deleted += 1;
        }
        for addr in self.state.locals.clone().difference(&locals) {
            self.kernel.delete_local(*addr)?;
            self.state.locals.remove(addr);
        }
        Ok(changes)
    }

    /// Sets one port's backends; writes nothing if they are unchanged.
    pub fn set_port(
        &mut self,
        key: ServiceKey,
        backends: &BTreeSet<MeshBackend>,
        changes: &mut MeshChanges,
    ) -> Result<(), MeshError> {
        if self.state.services.get(&key) == Some(backends) {
            return Ok(());
        }
        let table = service_table(backends);
        let live: BTreeSet<LiveKey> = table.backends[..table.count as usize]
            .iter()
            .map(|b| LiveKey::new(key, b))
            .collect();
        let old: BTreeSet<LiveKey> = self
            .state
            .services
            .get(&key)
            .map(|old| {
                old.iter()
                    .map(|b| LiveKey::new(key, &wire_backend(b)))
                    .collect()
            })
            .unwrap_or_default();
        for k in live.difference(&old) {
            self.kernel.put_live(*k)?;
            self.state.live.insert(*k);
            changes.live_added += 1;
        }
        self.kernel.put_service(key, &table)?;
        self.state.services.insert(key, backends.clone());
        changes.services_written += 1;
        for k in old.difference(&live) {
            self.kernel.delete_live(*k)?;
            self.state.live.remove(k);
            changes.live_removed += 1;
        }
        Ok(())
    }
}

/// An in-memory [`MeshKernel`] that also answers which backend a new flow
/// would get, as the program does.
#[derive(Debug, Default)]
pub struct FakeMesh {
    pub tables: BTreeMap<ServiceKey, ServiceTable>,
    pub live: BTreeSet<LiveKey>,
    pub locals: BTreeSet<u32>,
    pub writes: usize,
}

impl FakeMesh {
    /// The backend a new flow from `client:client_port` to published
    /// `port` gets, if the port has any.
    pub fn pick(
        &self,
        client: Ipv4Addr,
        client_port: u16,
        port: u16,
        proto: Proto,
    ) -> Option<(Ipv4Addr, u16)> {
        let key = service_key(proto, port);
        let table = self.tables.get(&key)?;
        if table.count == 0 {
            return None;
        }
        let hash = shoal_ebpf_common::mesh::flow_hash(
            wire_addr(client.octets()),
            wire_port(client_port),
            key.port,
            key.proto,
        );
        let b = table.backends[usize::from(table.slots[hash as usize & (MAGLEV_SLOTS - 1)])];
        Some((Ipv4Addr::from(b.addr.to_ne_bytes()), u16::from_be(b.port)))
    }
}

impl MeshKernel for FakeMesh {
    fn observe(&mut self) -> Result<MeshState, MeshError> {
        Ok(MeshState {
            services: self
                .tables
                .iter()
                .map(|(k, t)| {
                    (
                        *k,
                        t.backends[..t.count as usize]
                            .iter()
                            .map(mesh_backend)
                            .collect(),
                    )
                })
                .collect(),
            live: self.live.clone(),
            locals: self.locals.clone(),
        })
    }
    fn put_service(&mut self, key: ServiceKey, table: &ServiceTable) -> Result<(), MeshError> {
        self.writes += 1;
        self.tables.insert(key, *table);
        Ok(())
    }
    fn delete_service(&mut self, key: ServiceKey) -> Result<(), MeshError> {
        self.writes += 1;
        self.tables.remove(&key);
        Ok(())
    }
    fn put_live(&mut self, key: LiveKey) -> Result<(), MeshError> {
        self.writes += 1;
        self.live.insert(key);
        Ok(())
    }
    fn delete_live(&mut self, key: LiveKey) -> Result<(), MeshError> {
        self.writes += 1;
        self.live.remove(&key);
        Ok(())
    }
    fn put_local(&mut self, addr: u32) -> Result<(), MeshError> {
        self.locals.insert(addr);
        Ok(())
    }
    fn delete_local(&mut self, addr: u32) -> Result<(), MeshError> {
        self.locals.remove(&addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
