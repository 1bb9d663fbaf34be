//! The service load balancer of a node: published ports on every node
//! (ingress, north-south: Swarm's routing mesh) and each service's virtual
//! IPs (east-west), behind one trait.
//!
//! [`LoadBalancer`] is the kernel boundary: it attaches to the node (its
//! underlay interface, the ingress network, the tasks' cgroup) and holds
//! the node's local addresses, each published port's backends and each
//! virtual IP's tasks. The eBPF data path ([`crate::ebpf::EbpfBalancer`])
//! implements it, so does IPVS ([`crate::ipvs::mesh::IpvsBalancer`]: virtual
//! services and real servers, weight 0 for a lingering backend), and [`FakeBalancer`] does in memory.
//! [`Balancer`] holds what was written and writes only what a new
//! [`BalancerSpec`] changes.
//!
//! This module decides nothing about which tasks exist (gossip does, see
//! `daemon::balancer`) and never touches the kernel itself.

mod apply;
mod fake;
pub mod host;
pub mod maglev;
mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_control::objects::MacAddr;
pub use shoal_control::objects::Protocol;

pub use apply::{desired_ports, Balancer, Changes};
pub use fake::FakeBalancer;
pub use retry::{FailingPort, PortEvent, PortRetry};

#[cfg(test)]
mod tests;

/// Which load balancer a node runs, chosen per node (`shoal agent --mesh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MeshMode {
    /// The eBPF data path: ingress on published ports, virtual IPs at
    /// `connect()`.
    #[default]
    Ebpf,
    /// IPVS (generic netlink) with nftables marks and SNAT: no eBPF at all.
    /// Backends see the ingress node's address, not the client's.
    Ipvs,
    /// No load balancer on this node: its addresses do not serve published
    /// ports, its tasks reach services by task address (`tasks.NAME`)
    /// only, and replies of its tasks to ingress clients have no way back
    /// (keep published services off it with a constraint).
    Off,
}

/// How a node runs its load balancer (`shoal agent --mesh`,
/// `--mesh-attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshConfig {
    pub mode: MeshMode,
    /// How the eBPF data path attaches its TC programs.
    pub attach: crate::ebpf::AttachMode,
}

/// A published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortKey {
    pub protocol: Protocol,
    pub port: u16,
}

impl std::fmt::Display for PortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// One backend of a published port: a task's address on the ingress
/// network, the port it listens on, its MAC there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MeshBackend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub mac: MacAddr,
}

/// A published port's backends as the balancer holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortBackends {
    /// They get new flows.
    pub active: BTreeSet<MeshBackend>,
    /// They keep the flows they have but get no new ones (their node is
    /// down or restarting; or the port has more backends than the
    /// balancer balances over). A backend that is in neither set has its
    /// flows reset.
    pub lingering: BTreeSet<MeshBackend>,
}

/// A published port and its backends, as the spec lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedService {
    pub protocol: Protocol,
    pub port: u16,
    pub backends: Vec<MeshBackend>,
    /// Backends that keep the flows they have but get no new ones: those of
    /// a node whose agent is down or restarting, whose tasks may well still
    /// serve. Only a withdrawn backend (its task stopped) has its flows reset.
    #[serde(default)]
    pub lingering: Vec<MeshBackend>,
}

/// What this node's balancer serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerSpec {
    /// Addresses whose published ports are served (the underlay's).
    pub locals: BTreeSet<Ipv4Addr>,
    pub services: Vec<PublishedService>,
    /// Each virtual IP and the tasks behind it.
    #[serde(default)]
    pub vips: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
}

/// What a balancer holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    pub locals: BTreeSet<Ipv4Addr>,
    pub ports: BTreeMap<PortKey, PortBackends>,
    pub vips: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
}

/// How much one balancer entry can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Active backends of one published port.
    pub backends_per_port: usize,
    /// Tasks behind one virtual IP.
    pub tasks_per_vip: usize,
}

/// An entry that asked for more than the balancer holds: the first `limit`
/// (lowest addresses) serve, the rest get nothing new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Overflow {
    Port {
        port: PortKey,
        backends: usize,
        limit: usize,
    },
    Vip {
        vip: Ipv4Addr,
        tasks: usize,
        limit: usize,
    },
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overflow::Port {
                port,
                backends,
                limit,
            } => write!(
                f,
                "published port {port} has {backends} backends; the mesh balances over at most \
                 {limit}, so {} get no new connections (scale the service down, or spread it \
                 over more published ports)",
                backends - limit
            ),
            Overflow::Vip { vip, tasks, limit } => write!(
                f,
                "virtual IP {vip} has {tasks} tasks; the mesh balances over at most {limit}, so \
                 {} get no connections through it (scale the service down, or reach them by \
                 `tasks.NAME`)",
                tasks - limit
            ),
        }
    }
}

/// Where a balancer attaches on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAttachment {
    /// The node's underlay address: the interface that holds it serves the
    /// published ports.
    pub vtep: Ipv4Addr,
    pub underlay_mtu: u32,
    /// The swarm's ingress network (its namespace, VXLAN device, subnet).
    pub network: String,
    pub vni: u32,
    pub subnet: ipnet::Ipv4Net,
    /// The largest IP packet a task on the ingress network can be sent.
    pub network_mtu: u32,
    /// This node's MAC on the ingress network.
    pub gateway_mac: MacAddr,
    /// The cgroup every task's cgroup is under (east-west hooks).
    pub cgroup_root: PathBuf,
    /// The cgroup every process of the node is under (the cgroup2 root),
    /// for the node's own clients of published ports; none: not served.
    pub host_cgroup: Option<PathBuf>,
    /// The other nodes' underlay addresses and gateway MACs on the ingress
    /// network (the IPVS mesh routes answers back to them).
    pub peers: BTreeMap<Ipv4Addr, MacAddr>,
}

/// What attaching found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// The underlay interface.
    pub underlay: String,
    /// Its addresses: the node's addresses that serve published ports.
    pub locals: BTreeSet<Ipv4Addr>,
    /// Whether anything was (re)attached this time.
    pub changed: bool,
}

/// What the data path counted since it was loaded (see
/// `shoal_ebpf_common::mesh::STAT_*`), as `(name, value)`.
pub type Counters = Vec<(&'static str, u64)>;

/// The kernel boundary: a node's load balancer.
pub trait LoadBalancer: Send {
    /// What the balancer holds now (read once, when a [`Balancer`] starts,
    /// so a restarted agent takes over an earlier one's entries).
    fn observe(&mut self) -> Result<Programmed, BalancerError>;
    /// Attaches to the node, or checks it still is; cheap when nothing
    /// changed. An earlier agent's attachment is taken over without a gap.
    fn attach(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError>;
    /// Takes everything down (leaving the swarm): flows in progress end.
    fn detach(&mut self) -> Result<(), BalancerError>;
    fn limits(&self) -> Limits;
    fn put_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError>;
    fn delete_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError>;
    /// Sets a port's backends. Flows of a backend that is neither active
    /// nor lingering end; the others keep their backend.
    fn put_port(&mut self, port: PortKey, backends: &PortBackends) -> Result<(), BalancerError>;
    fn delete_port(&mut self, port: PortKey) -> Result<(), BalancerError>;
    fn put_vip(&mut self, vip: Ipv4Addr, tasks: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError>;
    fn delete_vip(&mut self, vip: Ipv4Addr) -> Result<(), BalancerError>;
    /// The data path's counters.
    fn counters(&mut self) -> Result<Counters, BalancerError>;
}

/// Any balancer behind a box: the agent picks eBPF or IPVS at start.
impl LoadBalancer for Box<dyn LoadBalancer> {
    fn observe(&mut self) -> Result<Programmed, BalancerError> {
        (**self).observe()
    }
    fn attach(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError> {
        (**self).attach(node)
    }
    fn detach(&mut self) -> Result<(), BalancerError> {
        (**self).detach()
    }
    fn limits(&self) -> Limits {
        (**self).limits()
    }
    fn put_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        (**self).put_local(addr)
    }
    fn delete_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        (**self).delete_local(addr)
    }
    fn put_port(&mut self, port: PortKey, backends: &PortBackends) -> Result<(), BalancerError> {
        (**self).put_port(port, backends)
    }
    fn delete_port(&mut self, port: PortKey) -> Result<(), BalancerError> {
        (**self).delete_port(port)
    }
    fn put_vip(&mut self, vip: Ipv4Addr, tasks: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        (**self).put_vip(vip, tasks)
    }
    fn delete_vip(&mut self, vip: Ipv4Addr) -> Result<(), BalancerError> {
        (**self).delete_vip(vip)
    }
    fn counters(&mut self) -> Result<Counters, BalancerError> {
        (**self).counters()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
    #[error(transparent)]
    Ipvs(#[from] crate::ipvs::IpvsError),
    #[error("the routing mesh cannot attach: {0}")]
    Attach(String),
    #[error("the routing mesh holds less than asked: {}", .0.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("; "))]
    OverLimit(Vec<Overflow>),
    #[error("published port {port} refused: {reason}")]
    PortRefused { port: PortKey, reason: String },
}
